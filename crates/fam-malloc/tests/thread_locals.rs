//! Each thread's heap, as the C library reaches it: a thread-local pointer to a heap mapped at
//! the thread's first slow path and used again by later threads. Threads with the smallest
//! stacks start, what a thread allocates after its exit destructor ran goes straight to the
//! pool, and more threads at once than the pool of heaps holds still work.

use core::ffi::c_void;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use fam_malloc as fm;

/// Fills `len` bytes at `p` with a pattern of `seed`.
///
/// # Safety
/// `p` holds `len` writable bytes.
unsafe fn fill(p: *mut u8, len: usize, seed: usize) {
    for i in 0..len {
        // SAFETY: per the contract.
        unsafe { p.add(i).write((i ^ seed) as u8) };
    }
}

/// Whether `len` bytes at `p` still hold `fill`'s pattern of `seed`.
///
/// # Safety
/// `p` holds `len` readable bytes.
unsafe fn holds(p: *const u8, len: usize, seed: usize) -> bool {
    // SAFETY: per the contract.
    (0..len).all(|i| unsafe { p.add(i).read() } == (i ^ seed) as u8)
}

/// Allocates blocks of many classes, checks them and frees them: 0 when all was well.
fn work(seed: usize) -> usize {
    let mut bad = 0;
    let mut blocks = Vec::with_capacity(64);
    for i in 0..64 {
        let len = 1 + (i * 53 + seed) % 3000;
        let p = fm::malloc(len).cast::<u8>();
        assert!(!p.is_null());
        // SAFETY: `len` writable bytes.
        unsafe { fill(p, len, seed + i) };
        blocks.push((p, len));
    }
    for (i, &(p, len)) in blocks.iter().enumerate() {
        // SAFETY: live blocks of `len` bytes, freed once.
        unsafe {
            bad += usize::from(!holds(p, len, seed + i));
            fm::free(p.cast());
        }
    }
    bad
}

extern "C" fn small_stack_thread(arg: *mut c_void) -> *mut c_void {
    work(arg as usize) as *mut c_void
}

/// A thread created with a stack of `PTHREAD_STACK_MIN` (16 KiB on x86-64) or 32 KiB starts and
/// allocates. glibc takes a thread's static TLS out of its stack, so a library whose static TLS
/// held the whole heap (tens of kilobytes) made `pthread_create` fail with `EINVAL` here.
#[test]
fn threads_with_small_stacks_start_and_allocate() {
    for stack in [libc::PTHREAD_STACK_MIN, 32 << 10] {
        // SAFETY: plain pthread calls on local, initialised values; the thread is joined.
        unsafe {
            let mut attr: libc::pthread_attr_t = core::mem::zeroed();
            assert_eq!(libc::pthread_attr_init(&mut attr), 0);
            assert_eq!(libc::pthread_attr_setstacksize(&mut attr, stack), 0);
            let mut t: libc::pthread_t = 0;
            let seed = stack as *mut c_void;
            let made = libc::pthread_create(&mut t, &attr, small_stack_thread, seed);
            assert_eq!(made, 0, "pthread_create with a {stack}-byte stack failed");
            let mut ret: *mut c_void = core::ptr::null_mut();
            assert_eq!(libc::pthread_join(t, &mut ret), 0);
            assert_eq!(ret as usize, 0, "blocks lost their content");
            libc::pthread_attr_destroy(&mut attr);
        }
    }
}

/// What the late key destructor saw: 1 when its allocations held, 2 when one did not.
static LATE: AtomicUsize = AtomicUsize::new(0);

/// A key destructor that runs after the allocator's own (its key was created later): it
/// frees the block its thread left in the key, then allocates and frees.
extern "C" fn late_destructor(value: *mut c_void) {
    // SAFETY: the thread stored a live block of 100 bytes filled with seed 7.
    let kept = unsafe { holds(value.cast(), 100, 7) };
    // SAFETY: that block, freed once.
    unsafe { fm::free(value) };
    let ok = kept && work(11) == 0;
    LATE.store(if ok { 1 } else { 2 }, Ordering::SeqCst);
}

/// A thread whose exit destructor has run (its heap went back to the pool of heaps) still
/// allocates and frees, in the key destructors of other libraries that run after it.
#[test]
fn allocations_after_the_exit_destructor_go_to_the_pool() {
    // The allocator's exit key exists once anything was allocated; this one comes after it.
    let first = fm::malloc(8);
    // SAFETY: a live block, freed once.
    unsafe { fm::free(first) };
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is writable; the destructor has the right type.
    let made = unsafe { libc::pthread_key_create(&mut key, Some(late_destructor)) };
    assert_eq!(made, 0);
    for _ in 0..8 {
        LATE.store(0, Ordering::SeqCst);
        thread::spawn(move || {
            assert_eq!(work(3), 0);
            let p = fm::malloc(100).cast::<u8>();
            // SAFETY: 100 writable bytes; the key keeps the block until its destructor.
            unsafe {
                fill(p, 100, 7);
                assert_eq!(libc::pthread_setspecific(key, p.cast()), 0);
            }
        })
        .join()
        .unwrap();
        assert_eq!(LATE.load(Ordering::SeqCst), 1, "the late destructor failed");
    }
    // SAFETY: no thread uses the key any more.
    unsafe { libc::pthread_key_delete(key) };
}

/// More threads alive at once than the pool of heaps has slots (1024): the ones past it get a
/// heap mapped for them alone, unmapped at their exit. Every thread passes blocks to the next
/// one, which checks and frees them after the first thread may have exited; then a second wave
/// runs on heaps the first gave back.
#[test]
fn more_threads_at_once_than_the_pool_of_heaps() {
    const THREADS: usize = 1100;
    for wave in 0..2 {
        let gate = Arc::new(Barrier::new(THREADS));
        let bad = Arc::new(AtomicUsize::new(0));
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..THREADS)
            .map(|_| std::sync::mpsc::channel::<(usize, usize)>())
            .unzip();
        let mut rxs: Vec<_> = rxs.into_iter().map(Some).collect();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (gate, bad) = (gate.clone(), bad.clone());
                let tx = txs[(t + 1) % THREADS].clone();
                let rx = rxs[t].take().unwrap();
                thread::Builder::new()
                    .stack_size(64 << 10)
                    .spawn(move || {
                        let seed = wave * THREADS + t;
                        let len = 1 + seed % 700;
                        let p = fm::malloc(len).cast::<u8>();
                        // SAFETY: `len` writable bytes, handed to the next thread.
                        unsafe { fill(p, len, seed) };
                        tx.send((p as usize, seed)).unwrap();
                        drop(tx);
                        // Every thread holds a heap at once here.
                        gate.wait();
                        let mut n = work(seed);
                        let (q, from) = rx.recv().unwrap();
                        let qlen = 1 + from % 700;
                        // SAFETY: the previous thread's live block of `qlen` bytes, freed once.
                        unsafe {
                            n += usize::from(!holds(q as *const u8, qlen, from));
                            fm::free(q as *mut c_void);
                        }
                        bad.fetch_add(n, Ordering::Relaxed);
                    })
                    .expect("thread starts")
            })
            .collect();
        drop(txs);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            bad.load(Ordering::Relaxed),
            0,
            "wave {wave}: blocks lost content"
        );
    }
}
