//! Arena basics: collections, threads, fork with a shared arena.

use allocator_api2::boxed::Box as ABox;
use allocator_api2::vec::Vec as AVec;
use fam_alloc::Arena;

#[test]
fn vec_box_and_threads() {
    let arena = Arena::new();
    let mut v = AVec::new_in(&arena);
    for i in 0..100_000u64 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 99_999 * 100_000 / 2);
    let b = ABox::new_in([7u8; 300], &arena);
    assert_eq!(b.iter().map(|&x| x as u32).sum::<u32>(), 2100);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let arena = &arena;
            s.spawn(move || {
                let mut keep = Vec::new();
                for i in 0..20_000u64 {
                    let mut x = AVec::with_capacity_in(1 + (i % 50) as usize, arena);
                    x.push(t * 1_000_000 + i);
                    if i % 7 == 0 {
                        keep.push(x);
                    }
                }
                for (k, x) in keep.iter().enumerate() {
                    assert_eq!(x[0], t * 1_000_000 + 7 * k as u64);
                }
            });
        }
    });
    drop(v);
    drop(b);
    assert_eq!(arena.usage().blocks_in_use, 0);
    assert!(arena.usage().chunks_held > 0);
}

#[test]
fn shared_arena_child_writes_are_seen_by_parent() {
    let arena = Arena::shared(8).expect("shared arena");
    let slot: &mut [u64; 2] = ABox::leak(ABox::new_in([0u64; 2], &arena));
    // SAFETY: the child only writes into the shared slot and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut v = AVec::new_in(&arena);
        v.extend(1..=1000u64);
        let (ptr, len, _cap) = (v.as_ptr() as u64, v.len() as u64, v.capacity());
        core::mem::forget(v);
        slot[0] = ptr;
        slot[1] = len;
        arena.flush_thread_cache();
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(status, 0);
    let (ptr, len) = (slot[0] as *const u64, slot[1] as usize);
    assert_eq!(len, 1000);
    // SAFETY: the child built this Vec in the shared region, which the parent maps at the same address.
    let data = unsafe { std::slice::from_raw_parts(ptr, len) };
    assert_eq!(data.iter().sum::<u64>(), 500_500);
}

#[test]
fn shared_global_heap() {
    fam_alloc::init_global_allocator(4).unwrap();
    assert!(fam_alloc::init_global_allocator(4).is_err());
    let p = fam_alloc::alloc(100);
    assert!(!p.is_null());
    // SAFETY: `p` holds 100 bytes.
    unsafe { p.write_bytes(0xab, 100) };
    // SAFETY: `p` is live.
    let q = unsafe { fam_alloc::resize(p, 10_000) };
    // SAFETY: `q` holds at least 100 bytes copied from `p`.
    assert!(unsafe { std::slice::from_raw_parts(q, 100) }
        .iter()
        .all(|&b| b == 0xab));
    // SAFETY: `q` is live and not used afterwards.
    unsafe { fam_alloc::release(q) };
    let big = fam_alloc::alloc(5 << 20);
    assert!(!big.is_null());
    // SAFETY: as above.
    unsafe { fam_alloc::release(big) };
    // Full: 4 chunks cannot hold 5 blocks of 4 MiB.
    let many: Vec<_> = (0..5).map(|_| fam_alloc::alloc(4 << 20)).collect();
    assert!(many.iter().any(|p| p.is_null()));
    for p in many {
        // SAFETY: live or null.
        unsafe { fam_alloc::release(p) };
    }
}
