//! Exhaustive checks over every size from 0 to the largest class, for both policies.

use size_class::{natural_align, DefaultClasses, Fine, Pow2, SizeClasses};

/// Every size maps to a class that fits, is the smallest that fits, and round-trips.
fn check_policy<P: SizeClasses>() {
    for class in 0..P::NUM_CLASSES {
        let size = P::size_of(class);
        assert_eq!(
            P::class_of(size),
            Some(class),
            "size_of/class_of round trip of class {class}"
        );
        if class > 0 {
            assert!(P::size_of(class - 1) < size, "classes increase at {class}");
        }
    }
    assert_eq!(P::size_of(P::NUM_CLASSES - 1), P::MAX_SIZE);
    assert_eq!(P::class_of(0), Some(0));
    for size in 1..=P::MAX_SIZE {
        let class = P::class_of(size).unwrap_or_else(|| panic!("no class for {size}"));
        let block = P::size_of(class);
        assert!(
            block >= size,
            "class {class} ({block} B) too small for {size}"
        );
        if class > 0 {
            assert!(
                P::size_of(class - 1) < size,
                "class {class} not the smallest for {size}"
            );
        }
    }
    assert_eq!(P::class_of(P::MAX_SIZE + 1), None);
    assert_eq!(P::class_of(usize::MAX), None);
}

#[test]
fn pow2_classes_fit_and_are_minimal() {
    check_policy::<Pow2>();
    assert_eq!(Pow2::NUM_CLASSES, 18);
    for class in 0..Pow2::NUM_CLASSES {
        assert!(Pow2::size_of(class).is_power_of_two());
    }
}

#[test]
fn fine_classes_fit_and_are_minimal() {
    check_policy::<Fine>();
    assert_eq!(Fine::NUM_CLASSES, 64);
}

#[test]
fn fine_waste_bound_holds_for_every_size() {
    for size in 1..=Fine::MAX_SIZE {
        let block = Fine::size_of(Fine::class_of(size).unwrap());
        let waste = block - size;
        if size <= 64 {
            assert!(waste < 8, "waste {waste} for {size}");
        } else {
            // Less than a fifth of the block and less than a quarter of the request.
            assert!(
                5 * waste < block,
                "waste {waste} of block {block} for {size}"
            );
            assert!(4 * waste < size, "waste {waste} for request {size}");
        }
    }
}

#[test]
fn fine_has_four_classes_per_doubling() {
    let mut k = 64;
    while k < Fine::MAX_SIZE {
        let n = (0..Fine::NUM_CLASSES)
            .filter(|&c| Fine::size_of(c) > k && Fine::size_of(c) <= 2 * k)
            .count();
        assert_eq!(n, 4, "doubling ({k}, {}]", 2 * k);
        k *= 2;
    }
}

/// The aligned lookup picks the smallest class that is big enough and naturally aligned enough.
fn check_aligned<P: SizeClasses>() {
    let mut align = 1;
    while align <= 4096 {
        for size in 0..=P::MAX_SIZE {
            let expected = (0..P::NUM_CLASSES)
                .find(|&c| P::size_of(c) >= size && natural_align(P::size_of(c)) >= align);
            // The brute-force search is slow; check a thinned set of sizes against it, and all
            // sizes for the cheap properties.
            let got = P::class_of_aligned(size, align);
            match got {
                Some(c) => {
                    assert!(P::size_of(c) >= size);
                    assert!(
                        natural_align(P::size_of(c)) >= align,
                        "{size} @ {align} -> {c}"
                    );
                    if size % 97 == 0 || size < 4096 {
                        assert_eq!(got, expected, "{size} @ {align}");
                    }
                }
                None => assert_eq!(expected, None, "{size} @ {align}"),
            }
        }
        align *= 2;
    }
}

#[test]
fn pow2_aligned_lookup_is_minimal() {
    check_aligned::<Pow2>();
}

#[test]
fn fine_aligned_lookup_is_minimal() {
    check_aligned::<Fine>();
}

#[test]
fn aligned_lookup_is_cheap_for_cache_line_alignment() {
    // A 64-byte aligned request of 100 bytes costs 128 bytes, not a page.
    assert_eq!(Fine::size_of(Fine::class_of_aligned(100, 64).unwrap()), 128);
    assert_eq!(Fine::size_of(Fine::class_of_aligned(1, 64).unwrap()), 64);
    assert_eq!(Fine::size_of(Fine::class_of_aligned(300, 64).unwrap()), 320);
    assert_eq!(
        Pow2::size_of(Pow2::class_of_aligned(1, 4096).unwrap()),
        4096
    );
    assert_eq!(Fine::class_of_aligned(usize::MAX - 2, 64), None);
}

#[test]
fn lookups_work_in_const_context() {
    const TABLE: [usize; 4] = [
        Fine::size_of(0),
        Fine::size_of(8),
        Pow2::size_of(17),
        match Fine::class_of(1000) {
            Some(c) => c,
            None => 0,
        },
    ];
    assert_eq!(TABLE, [8, 80, 1 << 20, Fine::class_of(1000).unwrap()]);
    assert_eq!(
        <DefaultClasses as SizeClasses>::NUM_CLASSES,
        Fine::NUM_CLASSES
    );
}
