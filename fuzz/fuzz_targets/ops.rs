//! The allocation model of `crates/fam-alloc/tests/common/ops.rs` (the one the proptest state
//! machine runs) driven by fuzz input, on `FamAlloc` as this binary's global allocator: every
//! allocation the harness and the model make themselves goes through it too.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/fam-alloc/tests/common/mod.rs"]
mod common;
#[path = "../../crates/fam-alloc/tests/common/ops.rs"]
mod ops;

#[global_allocator]
static GLOBAL: fam_alloc::FamAlloc = fam_alloc::FamAlloc::new();

fuzz_target!(|data: &[u8]| {
    let mut model = ops::Model::new();
    for op in &ops::decode(data) {
        model.apply(op);
    }
    model.finish();
});
