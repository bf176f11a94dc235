//! The workloads of the suite: the programs of the `fam-workloads` package
//! (`benches/workloads`), one `[[bin]]` each.

/// One workload program.
#[derive(Debug, PartialEq)]
pub struct Workload {
    /// The program's name (its `[[bin]]` name).
    pub name: &'static str,
    /// What it does, in a line, for the report.
    pub about: &'static str,
    /// The classic benchmark it stands for, if any.
    pub classic: Option<Classic>,
}

/// A classic allocator benchmark a workload stands for, and how the port differs from it.
///
/// Every port was read side by side with the original's source and with the line that runs it
/// in mimalloc-bench's `bench.sh`. Some things differ in every port and are said once, in
/// [`COMMON_DIFFERENCES`]; `differs` lists the rest.
#[derive(Debug, PartialEq)]
pub struct Classic {
    /// The original program and how mimalloc-bench runs it.
    pub program: &'static str,
    /// What the port does differently, beyond the common differences.
    pub differs: &'static str,
}

/// What every port does differently from the program it stands for.
pub const COMMON_DIFFERENCES: &str = "Each program reports the time of its own measured section     (mimalloc-bench times whole processes, and runs larson, xmalloc-test and     bench-malloc-thread for a fixed wall-clock time, turning throughput into time; the ports     do a fixed amount of work). Each block gets the suite's check pattern (its tag in the     first 64 bytes, one word per 4 KiB page, the last word), read back before the block is     freed, where most originals write a few bytes and read nothing: a fixed cost per block,     the same for every allocator, which dilutes the differences and brings a block into the     freeing core's cache before `free` sees it. Blocks come from `malloc` where the C++     originals use `new`, and sizes and choices from the suite's seeded SplitMix generator";

/// Every workload, in the order the report lists them.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "larson",
        about: "Larson's server: threads replace random objects (8..1000 B) in their arrays; \
                each round new threads take over the arrays, so most frees are of blocks a \
                dead thread allocated",
        classic: Some(Classic {
            program: "`larson.cpp` (mimalloc-bench's C++ build): `larson 5 8 1000 5000 100 4141 N`",
            differs: "2,000 slots per thread instead of 5,000, filled by the main thread inside the measured section without the original's warm-up churn; 10 generations of 1.8 million replacements per thread instead of as many 500,000-replacement generations as fit in 5 s; a generation's threads all end before the next generation starts, where each original thread starts its own successor; sizes 8..=1000 B (the original's 8..=999)",
        }),
    },
    Workload {
        name: "xmalloc",
        about: "xmalloc-test: N producer threads allocate 64-byte objects, N consumer \
                threads free them",
        classic: Some(Classic {
            program: "`xmalloc-test.c`: `xmalloc-test -w N -t 5 -s 64`",
            differs: "a fixed 20 million objects per producer instead of counting frees for 5 s; consumers read each object's pattern before freeing it, where the original frees without reading",
        }),
    },
    Workload {
        name: "cache-thrash",
        about: "Hoard's cache-thrash: each thread allocates 8-byte objects and writes them \
                repeatedly (active false sharing)",
        classic: Some(Classic {
            program: "`cache-thrash.cpp`: `cache-thrash N 1000 1 2000000 N` (and once with 1 thread)",
            differs: "8-byte objects instead of 1-byte ones, 16,000 per thread instead of 1,000; each thread writes each object 50,000 times whatever the thread count, where the original splits its 2,000,000 repetitions among the threads (so here the ideal is the same time at any thread count, there a speed-up); volatile stores checked once at the end instead of a store and a volatile read; only the N-thread run; thread start-up is not measured",
        }),
    },
    Workload {
        name: "cache-scratch",
        about: "Hoard's cache-scratch: threads free 8-byte objects the main thread allocated, \
                then allocate and write their own (passive false sharing)",
        classic: Some(Classic {
            program: "`cache-scratch.cpp`: `cache-scratch N 1000 1 2000000 N` (and once with 1 thread)",
            differs: "object sizes, counts and repetitions as in cache-thrash; the main thread's objects carry the check pattern, which each thread reads before it frees them; only the N-thread run; measured from the barrier after every thread has started to the last join",
        }),
    },
    Workload {
        name: "mstress",
        about: "mimalloc's test-stress: large working sets, random frees, objects swapped \
                between threads, occasional blocks up to 1.25 MiB, threads reborn each round",
        classic: Some(Classic {
            program: "`mstress.c` (mimalloc's test-stress): `mstress N 50 25`",
            differs: "every thread does the same 80,000 working-set allocations per round (the original: 5,000 x (thread % 8 + 1)) and keeps as many for its life (the original: half as many); sizes are uniform 8..=128 B in steps of 8 for both kinds (the original: powers of two, 8..128 B for the working set and 8..512 B for kept objects); big objects are 2-4 times rarer and at most 1.25 MiB (the original: 5 MiB); the check pattern touches a word per page of a big object where the original writes and checks every word; 30 rounds instead of 25, and the transfer array is never half-freed between rounds",
        }),
    },
    Workload {
        name: "mixed",
        about: "batches of 8 B..32 KiB objects (log-uniform) allocated and freed in random order",
        classic: None,
    },
    Workload {
        name: "glibc-simple",
        about: "glibc's bench-malloc-simple: one thread allocates 25..1600 blocks of one size \
                (16, 32 or 64 B), then frees them; on the main thread, a new thread, then the \
                main thread again",
        classic: Some(Classic {
            program: "`bench-malloc-simple.c` (glibc's benchtests): `glibc-simple`, no arguments",
            differs: "500,000 blocks per size, batch length and phase instead of the original's 2 million after a warm-up; the original writes every word of a block and never reads it, the port stamps the first 64 bytes (the whole block at these sizes) and checks them",
        }),
    },
    Workload {
        name: "glibc-thread",
        about: "glibc's bench-malloc-thread: threads replace random blocks of a 1024-block \
                working set, sizes 4 B..32 KiB with density 1/size^2",
        classic: Some(Classic {
            program: "`bench-malloc-thread.c` (glibc's benchtests): `glibc-thread N`",
            differs: "18 million replacements per thread instead of running for 2 s; each thread draws from its own generator where the original's threads all cycle through one table of 8,000 sizes and 4,096 slots from unseeded `rand()`; the original fills every byte of a new block and reads nothing, the port stamps (for blocks above 72 B, far fewer bytes); the final frees are measured",
        }),
    },
    Workload {
        name: "large",
        about: "threads replace random blocks of 64 KiB..32 MiB, writing every page",
        classic: None,
    },
    Workload {
        name: "realloc",
        about: "threads grow 64 buffers each by 1..64-byte realloc steps up to 64 B..256 KiB",
        classic: None,
    },
    Workload {
        name: "malloc-large",
        about: "mimalloc-bench's malloc-large: one thread (whatever --threads says) puts new \
                5..25 MiB blocks, each zeroed with memset after malloc, into random slots of 20, \
                freeing the block each replaces",
        classic: Some(Classic {
            program: "`malloc-large.cpp`: `malloc-large`",
            differs: "`malloc` then `memset` where the original value-initialises with `new char[n]()`; a 64-byte stamp and a last-word mark on the zeroes, checked before the free (no word per page: the memset touches every page already); the iteration count scales with `--scale`",
        }),
    },
    Workload {
        name: "rss-after-free",
        about: "one thread (whatever --threads says) allocates 512 MiB of 16 B..1 MiB blocks \
                writing every page, frees all but every 64th in shuffled order, sleeps 1 s \
                (untimed) and reports the resident set then",
        classic: None,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The workloads that stand for a classic program say which and how they differ; the
    /// suite's own workloads are the ones without.
    #[test]
    fn ports_name_their_original_and_what_differs() {
        let own: Vec<&str> = WORKLOADS
            .iter()
            .filter(|w| w.classic.is_none())
            .map(|w| w.name)
            .collect();
        assert_eq!(own, ["mixed", "large", "realloc", "rss-after-free"]);
        for w in WORKLOADS {
            if let Some(c) = &w.classic {
                assert!(c.program.contains('`'), "{}: {}", w.name, c.program);
                assert!(c.differs.len() > 40, "{}: {}", w.name, c.differs);
                assert!(
                    !c.differs.ends_with('.'),
                    "{}: the report adds the stop",
                    w.name
                );
            }
        }
    }

    /// The suite and the package agree: every workload is a `[[bin]]` of `fam-workloads`, and
    /// every `[[bin]]` is in the suite.
    #[test]
    fn every_workload_is_a_program_of_the_package() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../benches/workloads/Cargo.toml");
        let text = std::fs::read_to_string(&manifest).expect("benches/workloads/Cargo.toml");
        let mut bins = Vec::new();
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin {
                if let Some(v) = line.strip_prefix("name = ") {
                    bins.push(v.trim_matches('"').to_owned());
                }
            }
        }
        let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        assert_eq!(bins, names);
    }
}
