//! The atomics of the membership protocol: `core`'s, or loom's under `cfg(loom)` so that the
//! same code is model checked (see [`crate::membership`]).

#[cfg(not(loom))]
pub use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
