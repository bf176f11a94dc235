//! The size classes, from the slab pool's class table (see [`slab_pool::class`]), and the thread
//! heap built on them.

pub(crate) use slab_pool::class::CAPS;
use slab_pool::class::CAP_SLOTS;
pub(crate) use slab_pool::class::{small_class, CLASSES, MAX_SMALL, MAX_SMALL_ALIGN, NUM_CLASSES};

/// A thread heap (or an arena's) over the slab classes: room for every class's full bucket.
pub(crate) type Heap = thread_heap::ThreadHeap<NUM_CLASSES, CAP_SLOTS>;
