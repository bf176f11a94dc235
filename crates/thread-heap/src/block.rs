//! Free blocks as the heap and its store name them.
//!
//! The heap never reads or writes a free block: a bucket holds block addresses, and blocks move
//! between a [`ThreadHeap`](crate::ThreadHeap) and a [`CentralStore`](crate::CentralStore) as
//! slices of addresses. [`Block`] is only the type those addresses point to; what a free block
//! holds is the store's business (a store may thread its own lists through them).

/// A free block, as an address: at least one word long and word aligned; its content belongs to
/// whoever owns the block (its user while allocated, the store while free in it, nobody while
/// cached in a bucket, which does not touch it). Opaque: the heap never looks inside.
#[repr(C)]
#[derive(Debug)]
pub struct Block {
    _first_word: usize,
}

const _: () = assert!(size_of::<Block>() == size_of::<usize>());
const _: () = assert!(align_of::<Block>() == align_of::<usize>());
