//! The atomic types every operation goes through.
//!
//! In ordinary builds these are `core::sync::atomic`'s. Built with `RUSTFLAGS="--cfg loom"`
//! they are [loom](https://docs.rs/loom)'s, so the very same code is model checked over every
//! interleaving and every weak-memory outcome the orderings allow (see `tests/loom.rs`).
//!
//! Callers that build a [`SlotSet`](crate::SlotSet) over their own words should name the types
//! through this module, so their code keeps compiling under `cfg(loom)`.

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
