//! `xmalloc`: the xmalloc-test shape, one side allocates and the other frees.
//!
//! Half the threads (at least one) produce: they allocate objects (log-uniform sizes, 8..=512
//! bytes), stamp them and push them in batches onto a shared, bounded queue. The other half
//! consume: they pop batches, check every object's pattern and free it. Every free is of a
//! block another thread allocated, so an allocator that sends blocks home, or keeps them in
//! the freeing thread, shows its cost here.
//!
//! Measured: from the start of the threads to the last free.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use fam_workloads::block::{tag, Slot};
use fam_workloads::{fail, finish, Args, Rng, Work};

/// Objects per producer at scale 1.
const OBJECTS: usize = 14_000_000;
/// Objects per batch.
const BATCH: usize = 256;
/// Batches the queue holds before producers wait.
const QUEUE_BOUND: usize = 64;

/// The queue between producers and consumers.
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

    /// The next batch, or `None` once every producer is done and the queue is empty.
    fn pop(&self) -> Option<Vec<Slot>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(b) = st.batches.pop_front() {
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
        "producer threads allocate, consumer threads check and free",
    );
    let producers = (args.threads / 2).max(1);
    let consumers = (args.threads - producers).max(1);
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
                let mut rng = Rng::new(p as u64 + 1);
                let mut batch = Vec::with_capacity(BATCH);
                for n in 0..objects {
                    batch.push(Slot::new(rng.log_uniform(8, 512), tag(p, n as u64)));
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
