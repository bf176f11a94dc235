//! Several threads allocating, growing and freeing at once, sharing one cache.

#![cfg(feature = "mmap")]

mod common;

use std::sync::Mutex;

use chunk_source::MmapSource;
use common::{check, fill, spot_check, Probe, MIB};
use large_alloc::{LargeAlloc, LargeBlock, CHUNK_SIZE};

/// A tiny deterministic generator, one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const THREADS: usize = 4;
const ROUNDS: usize = 40;
const LIVE: usize = 4;

#[test]
fn four_threads_with_content_checks() {
    let large = LargeAlloc::new(Probe::new(MmapSource::new()));
    // Blocks handed from one thread to another, to be freed there.
    let handoff: Mutex<Vec<(usize, usize, u64)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let large = &large;
            let handoff = &handoff;
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1234_5678));
                let mut live: Vec<(LargeBlock, usize, u64)> = Vec::new();
                for round in 0..ROUNDS {
                    let seed = ((t as u64) << 32) | round as u64;
                    // Mostly sizes the cache serves (1..4 chunks), sometimes longer ones.
                    let size = if rng.below(8) == 0 {
                        5 * CHUNK_SIZE + rng.below(3 * CHUNK_SIZE)
                    } else {
                        MIB + rng.below(2 * CHUNK_SIZE)
                    };
                    let align = 1 << rng.below(13);
                    let b = large.alloc(size, align).unwrap();
                    assert_eq!(b.ptr.as_ptr() as usize % align, 0);
                    // SAFETY: a live block of `size` bytes, ours.
                    unsafe { fill(b.ptr, size, seed) };
                    live.push((b, size, seed));

                    // Every live block still holds what its owner wrote (all of it is checked
                    // when it is freed or reallocated).
                    for &(b, size, seed) in &live {
                        // SAFETY: our live blocks.
                        unsafe { spot_check(b.ptr, size, seed) }
                            .unwrap_or_else(|at| panic!("thread {t}: block overwritten at {at}"));
                    }

                    if rng.below(4) == 0 {
                        // Grow or shrink one and check what it kept.
                        let i = rng.below(live.len());
                        let (b, size, seed) = live[i];
                        let new = MIB + rng.below(3 * CHUNK_SIZE);
                        // SAFETY: our live block, used by nobody else.
                        let r = unsafe { large.realloc(b.ptr, new) }.unwrap();
                        // SAFETY: the block now has `new` bytes.
                        unsafe {
                            check(r.block.ptr, size.min(new), seed)
                                .unwrap_or_else(|at| panic!("thread {t}: realloc lost byte {at}"));
                            fill(r.block.ptr, new, seed ^ 1);
                        }
                        live[i] = (r.block, new, seed ^ 1);
                    }

                    if live.len() > LIVE {
                        let (b, size, seed) = live.remove(rng.below(live.len()));
                        if rng.below(3) == 0 {
                            // Another thread frees it.
                            handoff
                                .lock()
                                .unwrap()
                                .push((b.ptr.as_ptr() as usize, size, seed));
                        } else {
                            // SAFETY: our live block, freed once.
                            unsafe {
                                check(b.ptr, size, seed)
                                    .unwrap_or_else(|at| panic!("thread {t}: lost byte {at}"));
                                large.dealloc(b.ptr).unwrap();
                            }
                        }
                    }
                    // Free what others handed over.
                    let taken = handoff.lock().unwrap().pop();
                    if let Some((p, size, seed)) = taken {
                        let ptr = std::ptr::NonNull::new(p as *mut u8).unwrap();
                        // SAFETY: a live block whose owner gave it up to whoever took it.
                        unsafe {
                            check(ptr, size, seed)
                                .unwrap_or_else(|at| panic!("handed-off block lost byte {at}"));
                            large.dealloc(ptr).unwrap();
                        }
                    }
                }
                for (b, size, seed) in live {
                    // SAFETY: our live blocks, each freed once.
                    unsafe {
                        check(b.ptr, size, seed).unwrap();
                        large.dealloc(b.ptr).unwrap();
                    }
                }
            });
        }
    });
    for (p, size, seed) in handoff.into_inner().unwrap() {
        let ptr = std::ptr::NonNull::new(p as *mut u8).unwrap();
        // SAFETY: live blocks given up by their owners.
        unsafe {
            check(ptr, size, seed).unwrap();
            large.dealloc(ptr).unwrap();
        }
    }
    // Every chunk is either cached or back with the source.
    assert_eq!(large.source().live_chunks(), large.cached_chunks());
    large.trim();
    assert_eq!(large.source().live_chunks(), 0);
}
