//! A loop of small alloc/free pairs, for counting the instructions of the fast paths:
//!
//! ```text
//! cargo build --release --example fastpath
//! valgrind --tool=callgrind target/release/examples/fastpath 1000000
//! valgrind --tool=callgrind target/release/examples/fastpath 2000000
//! ```
//!
//! The difference of the two totals divided by 1,000,000 is the cost of one alloc + free pair
//! with a warm thread heap. `fastpath floor N` runs the same loop over a bare thread-local LIFO
//! list (the physical floor of a thread-caching allocator), and `fastpath split N` allocates
//! 32 blocks then frees them, to separate the two paths.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::hint::black_box;

use fam_alloc::FamAlloc;

static A: FamAlloc = FamAlloc::new();

thread_local! {
    static FLOOR: Cell<*mut usize> = const { Cell::new(std::ptr::null_mut()) };
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next().unwrap_or_else(|| "1000000".into());
    let (mode, n) = match first.parse::<usize>() {
        Ok(n) => ("pair", n),
        Err(_) => {
            let n = args
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or(1_000_000);
            (if first == "floor" { "floor" } else { "split" }, n)
        }
    };
    let layout = Layout::from_size_align(32, 8).expect("valid layout");
    // Warm the thread heap so the loop below only sees fast paths.
    // SAFETY: the layout is valid and non-zero; each block is freed with the same layout.
    unsafe { A.dealloc(A.alloc(layout), layout) };
    let mut sum = 0usize;
    match mode {
        "pair" => {
            for _ in 0..n {
                // SAFETY: as above.
                unsafe {
                    let p = black_box(A.alloc(layout));
                    A.dealloc(p, layout);
                }
            }
        }
        "split" => {
            let mut held = [std::ptr::null_mut::<u8>(); 32];
            for _ in 0..n / 32 {
                for h in held.iter_mut() {
                    // SAFETY: as above.
                    *h = black_box(unsafe { A.alloc(layout) });
                }
                for &h in held.iter().rev() {
                    // SAFETY: each block is freed once, with its layout.
                    unsafe { A.dealloc(h, layout) };
                }
            }
        }
        _ => {
            let mut block = [0usize; 4];
            FLOOR.with(|f| f.set(block.as_mut_ptr()));
            for _ in 0..n {
                let p = FLOOR.with(|f| {
                    let p = f.get();
                    // SAFETY: the list holds the one block above, whose first word is its link.
                    f.set(unsafe { *p } as *mut usize);
                    p
                });
                let p = black_box(p);
                FLOOR.with(|f| {
                    // SAFETY: `p` is the block popped above; its first word becomes the link.
                    unsafe { *p = f.get() as usize };
                    f.set(p);
                });
            }
            sum += block[1];
        }
    }
    println!("{mode}: {n} iterations done ({sum})");
}
