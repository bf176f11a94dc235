//! The size classes, from the slab pool's class table (see [`slab_pool::class`]).

pub(crate) use slab_pool::class::{small_class, CLASSES, MAX_SMALL, MAX_SMALL_ALIGN, NUM_CLASSES};
