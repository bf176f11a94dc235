//! Gives the shared library its soname, `libfam_malloc.so.0` (the major version of its ABI), so
//! that programs linked against an installed copy record that name, as they do for
//! `libjemalloc.so.2` or `libmimalloc.so.2`. `cargo xtask install` lays out the usual links.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfam_malloc.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
