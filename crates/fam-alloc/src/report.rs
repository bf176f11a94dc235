//! Misuse reports: the pool's one-line message and abort (see [`slab_pool::bad_free`]).

pub(crate) use slab_pool::bad_free;
