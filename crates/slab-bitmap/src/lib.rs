#![doc = include_str!("../README.md")]
#![no_std]
#![warn(unreachable_pub)]

#[cfg(all(test, not(loom)))]
extern crate std;

mod array;
mod batch;
mod error;
pub mod primitive;
mod set;

pub use array::SlotArray;
pub use batch::Batch;
pub use error::ReleaseError;
pub use set::SlotSet;

#[cfg(all(test, not(loom)))]
mod tests;
