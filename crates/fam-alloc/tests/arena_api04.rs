//! allocator-api2 0.4's `Allocator` (feature `allocator-api2-04`): its collections in an
//! `Arena`, side by side with allocator-api2 0.2's in the same arena.
#![cfg(feature = "allocator-api2-04")]

use core::alloc::Layout;

use allocator_api2::vec::Vec as Vec02;
use allocator_api2_04::alloc::Allocator as Allocator04;
use allocator_api2_04::boxed::Box as Box04;
use allocator_api2_04::vec::Vec as Vec04;
use fam_alloc::Arena;

#[test]
fn vecs_and_boxes_of_both_versions_share_one_arena() {
    let arena = Arena::new();
    let mut v04 = Vec04::new_in(&arena);
    let mut v02 = Vec02::new_in(&arena);
    for i in 0..100_000u64 {
        v04.push(i);
        v02.push(!i);
    }
    let b04 = Box04::new_in([3u32; 100], &arena);
    assert_eq!(arena.usage().blocks_in_use, 3);
    assert!(v04
        .iter()
        .zip(&v02)
        .enumerate()
        .all(|(i, (&a, &b))| { a == i as u64 && b == !(i as u64) }));
    assert_eq!(b04.iter().sum::<u32>(), 300);

    // Growth past the largest slab class, content kept.
    let mut bytes = Vec04::new_in(&arena);
    for i in 0..(6usize << 20) / 4096 {
        bytes.extend_from_slice(&[i as u8; 4096]);
    }
    assert!(bytes
        .chunks(4096)
        .enumerate()
        .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    bytes.truncate(1000);
    bytes.shrink_to_fit();
    assert!(bytes.iter().all(|&b| b == 0));

    drop((v04, v02, b04, bytes));
    let u = arena.usage();
    assert_eq!((u.blocks_in_use, u.bytes_in_use), (0, 0));
}

#[test]
fn allocator_04_methods_resize_in_place_within_a_class() {
    let arena = Arena::new();
    let a = &arena;
    let old = Layout::from_size_align(100, 8).expect("layout");
    let block = Allocator04::allocate(&a, old).expect("allocate");
    let (p, len) = (block.cast::<u8>(), block.len());
    assert!(len >= 100);
    // SAFETY: the block holds `len` bytes.
    unsafe { p.as_ptr().write_bytes(0x42, 100) };
    let whole = Layout::from_size_align(len, 8).expect("layout");
    // SAFETY: `p` is live for `old`; `whole` is not smaller.
    let g = unsafe { Allocator04::grow_zeroed(&a, p, old, whole) }.expect("grow_zeroed");
    assert_eq!(g.cast::<u8>(), p, "grow within the class moved the block");
    // SAFETY: the block holds `len` bytes.
    let bytes = unsafe { core::slice::from_raw_parts(p.as_ptr(), len) };
    assert!(bytes[..100].iter().all(|&b| b == 0x42));
    assert!(bytes[100..].iter().all(|&b| b == 0));
    // SAFETY: `p` is live for `whole`; `old` is not larger.
    let s = unsafe { Allocator04::shrink(&a, p, whole, old) }.expect("shrink");
    assert_eq!(s.cast::<u8>(), p);
    let z = Allocator04::allocate_zeroed(&a, Layout::from_size_align(5000, 64).expect("layout"))
        .expect("allocate_zeroed");
    assert_eq!(z.cast::<u8>().as_ptr() as usize % 64, 0);
    // SAFETY: the block holds at least 5000 bytes.
    let zeroed = unsafe { core::slice::from_raw_parts(z.cast::<u8>().as_ptr(), 5000) };
    assert!(zeroed.iter().all(|&b| b == 0));
    // SAFETY: both blocks are live for these layouts.
    unsafe {
        Allocator04::deallocate(&a, p, old);
        Allocator04::deallocate(
            &a,
            z.cast(),
            Layout::from_size_align(5000, 64).expect("layout"),
        );
    }
    assert_eq!(arena.usage().blocks_in_use, 0);
}

#[test]
fn shared_arena_holds_04_collections() {
    let arena = Arena::shared(4).expect("shared arena");
    let mut v = Vec04::new_in(&arena);
    v.extend(0..50_000u32);
    assert!(arena.contains(v.as_ptr().cast()));
    assert_eq!(
        v.iter().map(|&x| x as u64).sum::<u64>(),
        49_999 * 50_000 / 2
    );
    drop(v);
    assert_eq!(arena.usage().blocks_in_use, 0);
}
