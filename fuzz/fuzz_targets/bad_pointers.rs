//! Bad pointers to fam-alloc's free paths, from fuzz input: each is freed in a forked child,
//! which must die of SIGABRT after the allocator's report (see
//! `crates/fam-alloc/tests/common/bad_pointer.rs`, which `tests/bad_pointers.rs` runs too).
//!
//! The global allocator stays the system's: the only blocks of fam-alloc's heap are the ones
//! each case makes, so a pointer that is a valid free is known and skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/fam-alloc/tests/common/bad_pointer.rs"]
mod bad_pointer;

fuzz_target!(|data: &[u8]| {
    if let Ok(case) = bad_pointer::decode(data) {
        bad_pointer::run(&case);
    }
});
