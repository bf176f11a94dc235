#!/usr/bin/env bash
# Robustness of libfam_malloc: misuse is reported, out of memory is a null result, refused
# munmaps and bad pointers do no harm, and fork never hangs. Each check runs a C program of
# tests/c/ (its top comment says what it does and what it must print) with the library preloaded,
# on the default (mmap) build and, where the backend matters, on the sbrk build.
#
#   misuse      tests/c/misuse.c, one run per case and build: the process must die of SIGABRT
#               (status 134) after exactly one stderr line `fam-alloc: OP(0xADDR): MESSAGE`,
#               where ADDR is the pointer the program printed just before the call and MESSAGE
#               the one this script expects for the case
#   oom         tests/c/oom.c: every allocating function returns NULL/ENOMEM under a lowered
#               RLIMIT_AS, earlier blocks and a failed realloc's block stay intact, allocation
#               works again once the limit is raised (both builds)
#   mapcount    tests/c/mapcount.c: free of large blocks while the process is at
#               vm.max_map_count (munmap refused) neither aborts nor changes errno (mmap build;
#               the sbrk build does not unmap). Reported as `skip` when the limit is too high
#               to reach in about 5 s
#   badptr      tests/c/badptr.c: free and malloc_usable_size of bad pointers abort (caught and
#               counted), never segfault and never return (both builds)
#   forkstorm   tests/c/forkstorm.c: forks while threads come and go; no child may hang or fail
#               (both builds, with and without FAM_STATS=1 FAM_STATS_FILE=/dev/null; and the
#               mmap build with the background purge thread on, purging at every wake-up)
#   sigfork     tests/c/sigfork.c: fork from a signal handler while the main thread allocates
#               (both builds; the mmap build also with the background purge thread on)
#   stdiofork   tests/c/stdiofork.c: fork racing getline and fflush(NULL), run again and again
#               (both builds); no run may hang or fail. A run still going after 20 s is killed
#               and fails, with the backtraces of its threads and children when gdb is installed
#
# Sizes: the default fits in about three minutes on two cores: badptr 100000 probes, forkstorm
# 2500 forks (10000 take some 30 s per check on two cores; four such checks would not fit),
# sigfork 5 s, stdiofork 20 runs. FULL=1 runs badptr 1000000 probes, forkstorm 10000 forks,
# sigfork 60 s and stdiofork 100 runs.
#
# Builds the release library first (`cargo build --release -p fam-malloc`, into $CARGO_TARGET_DIR
# or the workspace's target/), and an sbrk copy into the sbrk/ directory below it. KEEP_WORK=1
# keeps every program's output in the temporary directory it names. Prints `ok NAME`,
# `FAILED NAME: why` or `skip NAME: why` per check, then `N passed, N failed`, and exits with 1 if
# any check failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
crate=$(dirname "$here")
# shellcheck source=suite.sh
source "$here/suite.sh"

if [ -n "${FULL:-}" ]; then
    badptr_probes=1000000 forkstorm_forks=10000 sigfork_seconds=60 stdiofork_runs=100
else
    badptr_probes=100000 forkstorm_forks=2500 sigfork_seconds=5 stdiofork_runs=20
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fam-malloc-robustness.XXXXXX")
if [ -n "${KEEP_WORK:-}" ]; then
    echo "outputs kept in $work"
else
    trap 'rm -rf "$work"' EXIT
fi
ulimit -c 0 # the misuse and badptr checks abort on purpose: no core files
start=$(date +%s)

for tool in gcc timeout; do
    command -v "$tool" >/dev/null || {
        echo "robustness: $tool is missing" >&2
        exit 1
    }
done

echo "building libfam_malloc (release) into $target"
cargo build --release --quiet -p fam-malloc
echo "building libfam_malloc with the sbrk backend into $target/sbrk"
cargo build --release --quiet -p fam-malloc --features sbrk --target-dir "$target/sbrk"
declare -A lib=([mmap]=$target/release/libfam_malloc.so [sbrk]=$target/sbrk/release/libfam_malloc.so)
for build in mmap sbrk; do
    [ -f "${lib[$build]}" ] || {
        echo "robustness: ${lib[$build]} was not built" >&2
        exit 1
    }
done

# --- Reporting: ok, failed, skip and summary come from suite.sh ------------------------------

# compile NAME: builds $work/NAME from tests/c/NAME.c; a failure is the failed check
# NAME-compile, and the checks that need the program are left out.
compile() {
    local name=$1
    if gcc -O1 -pthread -Wall -Wextra -o "$work/$name" "$here/c/$name.c" 2>"$work/$name.compile.err"; then
        return 0
    fi
    failed "$name-compile" "gcc failed" "$(head -n 10 "$work/$name.compile.err")"
    return 1
}

# run NAME LIMIT COMMAND...: runs COMMAND with a time limit (a hang must end as a failure, not
# as a stuck CI job), stdout to $work/NAME.out and stderr to $work/NAME.err; sets `rc`.
run() {
    local name=$1 limit=$2
    shift 2
    rc=0
    { timeout -k 5 "$limit" "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null; } 2>/dev/null || rc=$?
}
status_text() {
    case $1 in
    124 | 137) echo "timed out (a hang?)" ;;
    134) echo "status 134 (SIGABRT)" ;;
    139) echo "status 139 (SIGSEGV)" ;;
    *) echo "status $1" ;;
    esac
}

# --- 1. Misuse ------------------------------------------------------------------------------

# MODE OP MESSAGE: the report each case must give. Alternatives are separated by `|`: just past a large block's run lies whatever the OS placed there, a foreign
# mapping or one of the allocator's slab chunks.
misuse_cases=(
    "double-free free double free (block already free)"
    "double-free-large free pointer not allocated by fam-alloc"
    "free-stack free pointer not allocated by fam-alloc"
    "free-global free pointer not allocated by fam-alloc"
    "free-interior free pointer to the inside of a block"
    "free-interior-large free not the start of a large block"
    "realloc-foreign realloc pointer not allocated by fam-alloc"
    "realloc-freed realloc double free (block already free)"
    "realloc-freed-same realloc double free (block already free)"
    "realloc-interior realloc pointer to the inside of a block"
    "usable-size-foreign malloc_usable_size pointer not allocated by fam-alloc"
    "usable-size-freed malloc_usable_size double free (block already free)"
    "free-run-base-5m free not the start of a large block"
    "free-run-base-9m free not the start of a large block"
    "free-run-base-17m free not the start of a large block"
    "free-run-base-64m free not the start of a large block"
    "free-past-small free double free (block already free)"
    "free-past-large free pointer not allocated by fam-alloc|pointer to the inside of a block"
    "free-past-chunk free pointer to the inside of a block"
    "free-cached-run free pointer not allocated by fam-alloc"
    "free-mmapped free pointer not allocated by fam-alloc"
    "free-one free pointer not allocated by fam-alloc"
    "free-kernel free pointer not allocated by fam-alloc"
)

# misuse BUILD MODE OP MESSAGE
misuse() {
    local build=$1 mode=$2 op=$3 want=$4
    local name=misuse-$build-$mode ptr nlines line msg alt matched=
    run "$name" 60 env LD_PRELOAD="${lib[$build]}" "$work/misuse" "$mode"
    ptr=$(head -n 1 "$work/$name.out")
    nlines=$(wc -l <"$work/$name.err")
    line=$(head -n 1 "$work/$name.err")
    if [ "$rc" -ne 134 ]; then
        failed "$name" "$(status_text "$rc"), want 134 (SIGABRT)" "stdout: $(head -c 300 "$work/$name.out")" \
            "stderr: $(head -c 300 "$work/$name.err")"
        return
    fi
    if [ "$nlines" -ne 1 ]; then
        failed "$name" "$nlines lines on stderr, want exactly one report" "$(head -c 600 "$work/$name.err")"
        return
    fi
    case $ptr in
    0x[0-9a-f]*) ;;
    *)
        failed "$name" "the program printed no pointer before the call" "stdout: $(head -c 300 "$work/$name.out")"
        return
        ;;
    esac
    local prefix="fam-alloc: $op($ptr): "
    if [ "${line#"$prefix"}" = "$line" ]; then
        failed "$name" "the report does not name $op($ptr)" "stderr: $line"
        return
    fi
    msg=${line#"$prefix"}
    local IFS='|'
    for alt in $want; do
        [ "$msg" = "$alt" ] && matched=1
    done
    if [ -n "$matched" ]; then
        ok "$name"
    else
        failed "$name" "message \"$msg\", want \"$want\""
    fi
}

if compile misuse; then
    for build in mmap sbrk; do
        for case in "${misuse_cases[@]}"; do
            read -r mode op want <<<"$case"
            misuse "$build" "$mode" "$op" "$want"
        done
    done
fi

# --- Programs that print a last line ----------------------------------------------------------

# expect_last NAME WANT LIMIT COMMAND...: passes when COMMAND exits with 0 and its last line of
# stdout is WANT.
expect_last() {
    local name=$1 want=$2 limit=$3 last
    shift 3
    run "$name" "$limit" "$@"
    last=$(tail -n 1 "$work/$name.out")
    if [ "$rc" -eq 0 ] && [ "$last" = "$want" ]; then
        ok "$name"
    else
        failed "$name" "$(status_text "$rc"), last line: $last" "stdout: $(tail -n 15 "$work/$name.out")" \
            "stderr: $(tail -c 600 "$work/$name.err")"
    fi
}

# --- 2. Out of memory -------------------------------------------------------------------------

if compile oom; then
    for build in mmap sbrk; do
        expect_last "oom-$build" "oom: ok" 120 env LD_PRELOAD="${lib[$build]}" "$work/oom"
    done
fi

# --- 3. A refused munmap ----------------------------------------------------------------------

if compile mapcount; then
    name=mapcount-mmap
    run "$name" 60 env LD_PRELOAD="${lib[mmap]}" "$work/mapcount"
    if [ "$rc" -eq 0 ] && grep -q '^mapcount: SKIP' "$work/$name.out"; then
        skip "$name" "$(grep '^mapcount: SKIP' "$work/$name.out")"
    elif [ "$rc" -eq 0 ] && [ "$(tail -n 1 "$work/$name.out")" = "mapcount: ok" ]; then
        ok "$name"
    else
        failed "$name" "$(status_text "$rc")" "stdout: $(tail -n 10 "$work/$name.out")" \
            "stderr: $(tail -c 600 "$work/$name.err")"
    fi
fi

# --- 4. Bad pointers --------------------------------------------------------------------------

# Every refused pointer writes its report on stderr: it goes to /dev/null; the counts the program
# prints are what is checked.
if compile badptr; then
    for build in mmap sbrk; do
        name=badptr-$build
        rc=0
        { timeout -k 5 300 env LD_PRELOAD="${lib[$build]}" "$work/badptr" "$badptr_probes" 1 \
            >"$work/$name.out" 2>/dev/null </dev/null; } 2>/dev/null || rc=$?
        if [ "$rc" -eq 0 ] && [ "$(tail -n 1 "$work/$name.out")" = "badptr: ok" ]; then
            ok "$name"
        else
            failed "$name" "$(status_text "$rc")" "$(grep -v '^badptr:   ' "$work/$name.out" | tail -n 20)"
        fi
    done
fi

# --- 5. Fork storms ---------------------------------------------------------------------------

want_storm="forks $forkstorm_forks hung 0 failed 0"
if compile forkstorm; then
    for build in mmap sbrk; do
        expect_last "forkstorm-$build" "$want_storm" 600 \
            env LD_PRELOAD="${lib[$build]}" "$work/forkstorm" "$forkstorm_forks"
        expect_last "forkstorm-$build-stats" "$want_storm" 600 \
            env FAM_STATS=1 FAM_STATS_FILE=/dev/null LD_PRELOAD="${lib[$build]}" "$work/forkstorm" "$forkstorm_forks"
    done
    # With the background purge thread purging at every wake-up: forks land in its passes, and
    # every child starts a thread of its own.
    expect_last "forkstorm-mmap-background" "$want_storm" 600 \
        env FAM_BACKGROUND_PURGE=1 FAM_PURGE_DELAY=0 LD_PRELOAD="${lib[mmap]}" "$work/forkstorm" "$forkstorm_forks"
fi

# --- 6. fork from a signal handler ------------------------------------------------------------

if compile sigfork; then
    for build in mmap sbrk; do
        expect_last "sigfork-$build" "sigfork: ok" $((sigfork_seconds + 60)) \
            env LD_PRELOAD="${lib[$build]}" "$work/sigfork" "$sigfork_seconds"
    done
    expect_last "sigfork-mmap-background" "sigfork: ok" $((sigfork_seconds + 60)) \
        env FAM_BACKGROUND_PURGE=1 FAM_PURGE_DELAY=0 LD_PRELOAD="${lib[mmap]}" "$work/sigfork" "$sigfork_seconds"
fi

# --- 7. fork racing stdio ---------------------------------------------------------------------

# One run of stdiofork NAME with LIB preloaded, without the program's own watchdog, so that a run
# still going after 20 s can be looked at: the backtraces of all its threads and of its children
# go to NAME.bt (when gdb is installed), then the process tree is killed and the run fails as
# the watchdog would have failed it. Sets rc.
stdiofork_once() {
    local name=$1 lib=$2 pid ticks=0 kids p
    env LD_PRELOAD="$lib" "$work/stdiofork" 1 hold >"$work/$name.out" 2>"$work/$name.err" </dev/null &
    pid=$!
    while kill -0 "$pid" 2>/dev/null && [ "$ticks" -lt 80 ]; do
        sleep 0.25
        ticks=$((ticks + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kids=$(grep -l "^PPid:[[:space:]]*$pid\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3 || true)
        : >"$work/$name.bt"
        if command -v gdb >/dev/null; then
            for p in $pid $kids; do
                echo "=== pid $p"
                timeout 30 gdb -p "$p" -batch -ex 'thread apply all bt' 2>&1 | grep -E '^(#|Thread)' || true
            done >"$work/$name.bt"
        fi
        # shellcheck disable=SC2086 # the children's pids are words
        kill -9 $kids "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "stdiofork: hung: not done after 20 s" >>"$work/$name.out"
        rc=1
        return
    fi
    rc=0
    wait "$pid" || rc=$?
}

if compile stdiofork; then
    for build in mmap sbrk; do
        name=stdiofork-$build
        bad=()
        for i in $(seq 1 "$stdiofork_runs"); do
            stdiofork_once "$name-$i" "${lib[$build]}"
            if [ "$rc" -ne 0 ] || [ "$(tail -n 1 "$work/$name-$i.out")" != "stdiofork: ok" ]; then
                bad+=("run $i: $(status_text "$rc"): $(tail -n 2 "$work/$name-$i.out" | tr '\n' ' ') $(head -c 300 "$work/$name-$i.err")")
                if [ -s "$work/$name-$i.bt" ]; then
                    bad+=("backtraces of the hung run (parent, then children):" "$(head -n 120 "$work/$name-$i.bt")")
                fi
            fi
        done
        if [ ${#bad[@]} -eq 0 ]; then
            ok "$name ($stdiofork_runs runs)"
        else
            failed "$name" "${#bad[@]} of $stdiofork_runs runs failed" "${bad[@]}"
        fi
    done
fi

[ "$skips" -eq 0 ] || echo "$skips skipped"
echo "robustness: $(($(date +%s) - start)) s"
summary
