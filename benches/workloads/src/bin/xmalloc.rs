//! `xmalloc`: the xmalloc-test shape, one side allocates and the other frees.
//!
//! As mimalloc-bench runs xmalloc-test (`-w N -s 64`): `--threads N` starts N producers and N
//! consumers. Producers allocate 64-byte objects, stamp them and push them in batches of 4096
//! onto a shared stack of at most 100 batches; consumers pop the newest batch, check every
//! object's pattern and free it. Every free is of a block another thread allocated, so an
//! allocator that sends blocks home, or keeps them in the freeing thread, shows its cost here.
//!
//! Measured: from the start of the threads to the last free.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use fam_workloads::block::{tag, Slot};
use fam_workloads::{fail, finish, Args, Work};

/// Objects per producer at scale 1.
const OBJECTS: usize = 20_000_000;
/// Bytes per object (the original's `-s 64`).
const SIZE: usize = 64;
/// Objects per batch (the original's batch).
const BATCH: usize = 4096;
/// Batches the stack holds before producers wait (the original's bound).
const QUEUE_BOUND: usize = 100;

/// The stack of batches between producers and consumers (last in, first out, as the
/// original's).
struct Queue {
    state: Mutex<State>,
    /// Signalled when a batch is pushed or the last producer finishes.
    filled: Condvar,
    /// Signalled when a batch is taken.
    drained: Condvar,
}

struct State {
    batches: VecDeque<Vec<Slot>>,
    producers_left: usize,
}

impl Queue {
    fn push(&self, batch: Vec<Slot>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.batches.len() >= QUEUE_BOUND {
            st = self.drained.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.batches.push_back(batch);
        drop(st);
        self.filled.notify_one();
    }

    /// The newest batch, or `None` once every producer is done and the queue is empty.
    fn pop(&self) -> Option<Vec<Slot>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(b) = st.batches.pop_back() {
                drop(st);
                self.drained.notify_one();
                return Some(b);
            }
            if st.producers_left == 0 {
                return None;
            }
            st = self.filled.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn producer_done(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.producers_left -= 1;
        drop(st);
        self.filled.notify_all();
    }
}

fn main() {
    let args = Args::from_env(
        "xmalloc",
        "N producer threads allocate, N consumer threads check and free",
    );
    let producers = args.threads.max(1);
    let consumers = producers;
    let objects = args.scaled(OBJECTS);
    let queue = Queue {
        state: Mutex::new(State {
            batches: VecDeque::new(),
            producers_left: producers,
        }),
        filled: Condvar::new(),
        drained: Condvar::new(),
    };
    let t0 = Instant::now();
    let freed: usize = std::thread::scope(|s| {
        for p in 0..producers {
            let queue = &queue;
            s.spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                for n in 0..objects {
                    batch.push(Slot::new(SIZE, tag(p, n as u64)));
                    if batch.len() == BATCH {
                        queue.push(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    }
                }
                if !batch.is_empty() {
                    queue.push(batch);
                }
                queue.producer_done();
            });
        }
        let handles: Vec<_> = (0..consumers)
            .map(|_| {
                let queue = &queue;
                s.spawn(move || {
                    let mut freed = 0;
                    while let Some(mut batch) = queue.pop() {
                        for slot in &mut batch {
                            slot.release("xmalloc");
                        }
                        freed += batch.len();
                    }
                    freed
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| fail(format_args!("a consumer panicked")))
            })
            .sum()
    });
    let elapsed = t0.elapsed();
    if freed != objects * producers {
        fail(format_args!(
            "freed {freed} objects of {}",
            objects * producers
        ));
    }
    finish(
        "xmalloc",
        &args,
        Work {
            ops: freed as u64,
            unit: "objects passed",
            elapsed,
        },
    );
}
