//! Helpers the pool's integration tests share.

use slab_pool::class::SLOT_OFFSET;

/// Resident pages of the block area of the chunk at `base`.
pub fn resident_pages(base: usize) -> usize {
    let page = chunk_source::page_size();
    let len = chunk_source::CHUNK_SIZE - SLOT_OFFSET;
    let mut v = vec![0u8; len / page];
    // SAFETY: the range is mapped (a chunk of the pool) and `v` has a byte per page.
    let r = unsafe {
        libc::mincore(
            (base + SLOT_OFFSET) as *mut libc::c_void,
            len,
            v.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    v.iter().filter(|b| *b & 1 != 0).count()
}
