//! The workloads of the suite: the programs of the `fam-workloads` package
//! (`benches/workloads`), one `[[bin]]` each.

/// One workload program.
#[derive(Debug, PartialEq)]
pub struct Workload {
    /// The program's name (its `[[bin]]` name).
    pub name: &'static str,
    /// What it does, in a line, for the report.
    pub about: &'static str,
}

/// Every workload, in the order the report lists them.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "larson",
        about: "Larson's server: threads replace random objects (8..1000 B) in their arrays; \
                each round new threads take over the arrays, so most frees are of blocks a \
                dead thread allocated",
    },
    Workload {
        name: "xmalloc",
        about: "xmalloc-test: producer threads allocate (8..512 B), consumer threads free",
    },
    Workload {
        name: "cache-thrash",
        about: "Hoard's cache-thrash: each thread allocates 8-byte objects and writes them \
                repeatedly (active false sharing)",
    },
    Workload {
        name: "cache-scratch",
        about: "Hoard's cache-scratch: threads free 8-byte objects the main thread allocated, \
                then allocate and write their own (passive false sharing)",
    },
    Workload {
        name: "mstress",
        about: "mimalloc's test-stress: large working sets, random frees, objects swapped \
                between threads, occasional blocks up to 1.25 MiB, threads reborn each round",
    },
    Workload {
        name: "mixed",
        about: "batches of 8 B..32 KiB objects (log-uniform) allocated and freed in random order",
    },
    Workload {
        name: "glibc-simple",
        about: "glibc's bench-malloc-simple: one thread allocates 25..1600 blocks of one size \
                (16 B..4 KiB), then frees them",
    },
    Workload {
        name: "glibc-thread",
        about: "glibc's bench-malloc-thread: threads replace random blocks of a 1024-block \
                working set, sizes 4 B..32 KiB with density 1/size^2",
    },
    Workload {
        name: "large",
        about: "threads replace random blocks of 64 KiB..32 MiB, writing every page",
    },
    Workload {
        name: "realloc",
        about: "threads grow 64 buffers each by 1..64-byte realloc steps up to 64 B..256 KiB",
    },
    Workload {
        name: "malloc-large",
        about: "mimalloc-bench's malloc-large: one thread (whatever --threads says) puts new \
                5..25 MiB blocks, each zeroed with memset after malloc, into random slots of 20, \
                freeing the block each replaces",
    },
    Workload {
        name: "rss-after-free",
        about: "one thread (whatever --threads says) allocates 512 MiB of 16 B..1 MiB blocks \
                writing every page, frees all but every 64th in shuffled order, sleeps 1 s \
                (untimed) and reports the resident set then",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

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
