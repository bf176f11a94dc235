//! The size classes, from the slab pool's class table (see [`slab_pool::class`]), and the heap
//! an arena builds on them (a thread's is in `local`, with capacities of its own).

pub(crate) use slab_pool::class::CAPS;
use slab_pool::class::CAP_SLOTS;
pub(crate) use slab_pool::class::{small_class, CLASSES, MAX_SMALL, MAX_SMALL_ALIGN, NUM_CLASSES};

/// An arena's heap: room for every class's full bucket at the classes' own capacities
/// ([`CAPS`]).
pub(crate) type ArenaHeap = thread_heap::ThreadHeap<NUM_CLASSES, CAP_SLOTS>;
