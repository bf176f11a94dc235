#!/usr/bin/env bash
# Real programs on libfam_malloc: each one runs once on the C library's malloc and once with the
# library preloaded (or linked), and the two runs must print the same and exit the same way.
#
#   python3   an allocation-heavy script of ours, and a set of the standard library's tests
#   bash      pipelines, subshells, command substitution, background jobs (fork without exec)
#   git       200 commits with fixed dates, then log, gc and fsck
#   gcc       compiles a C program (the object files must be identical), which then runs
#   sqlite3   10k inserts in a transaction, indexes, joins, group by
#   stress    tests/c/stress.c: 16 threads passing objects around, dying and reborn, forking;
#             linked with the static library and run under LD_PRELOAD
#   reentry   tests/c/reentry.c: glibc's calloc entered again while a thread registers
#   api       tests/c/api.c: the C interface through the header, static and shared linking
#   misuse    tests/c/misuse.c: double free, foreign and interior pointers must be reported
#             (`fam-alloc: OP(0x...)` on stderr) and abort (exit status 134)
#   cxx       tests/c/cxx.cc: C++ operator new and delete, every form the library's (preloaded
#             and statically linked), alignment, new handler, bad_alloc, checked deletes
#
# Builds the library in release mode first (`cargo build --release -p fam-malloc`, into
# $CARGO_TARGET_DIR or the workspace's target/). Programs that are missing are installed with
# apt-get; if that is impossible the script fails. KEEP_WORK=1 keeps every program's output in
# the temporary directory it names. Prints `ok NAME` or `FAILED NAME` per check,
# then `N passed, N failed`, and exits with 1 if any check failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
crate=$(dirname "$here")
# shellcheck source=suite.sh
source "$here/suite.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/fam-malloc-programs.XXXXXX")
if [ -n "${KEEP_WORK:-}" ]; then
    echo "outputs kept in $work"
else
    trap 'rm -rf "$work"' EXIT
fi
ulimit -c 0 # the misuse checks abort on purpose: no core files

# --- What the checks need -------------------------------------------------------------------

apt_updated=
apt_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "real-programs: need to install $*, but not root and no sudo" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        echo "real-programs: need to install $*, but there is no apt-get" >&2
        exit 1
    fi
    if [ -z "$apt_updated" ]; then
        ${sudo[@]+"${sudo[@]}"} apt-get update -qq || {
            echo "real-programs: apt-get update failed" >&2
            exit 1
        }
        apt_updated=1
    fi
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || {
        echo "real-programs: apt-get install $* failed" >&2
        exit 1
    }
}

missing=()
for tool in python3:python3 git:git gcc:gcc g++:g++ sqlite3:sqlite3 nm:binutils awk:gawk md5sum:coreutils; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# A python3 with its standard library's test package: the one on PATH, the system's, or the
# system's after installing the package that holds the tests.
python=
for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -m test --help >/dev/null 2>&1; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    [ -x /usr/bin/python3 ] || apt_install python3
    version=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    apt_install "libpython$version-testsuite"
    python=/usr/bin/python3
    "$python" -m test --help >/dev/null 2>&1 || {
        echo "real-programs: $python -m test does not work after installing its tests" >&2
        exit 1
    }
fi

echo "building libfam_malloc (release) into $target"
cargo build --release --quiet -p fam-malloc
lib=$target/release/libfam_malloc.so
static=$target/release/libfam_malloc.a
for f in "$lib" "$static"; do
    [ -f "$f" ] || {
        echo "real-programs: $f was not built" >&2
        exit 1
    }
done

# --- Reporting: ok, failed, skip and summary come from suite.sh ------------------------------

# same NAME COMMAND...: runs COMMAND on the C library's malloc, then with the library preloaded;
# passes when both runs exit with 0 and print the same standard output. COMMAND may be a shell
# function (LD_PRELOAD then reaches every program it starts). `same_status` is the same check,
# except that the status only has to be equal, not 0.
same() { compare 1 "$@"; }
same_status() { compare 0 "$@"; }
compare() {
    local want_zero=$1 name=$2 rc_plain=0 rc_fam=0
    shift 2
    "$@" >"$work/$name.plain" 2>"$work/$name.plain.err" </dev/null || rc_plain=$?
    LD_PRELOAD=$lib "$@" >"$work/$name.fam" 2>"$work/$name.fam.err" </dev/null || rc_fam=$?
    if [ "$rc_plain" -eq "$rc_fam" ] && { [ "$want_zero" -eq 0 ] || [ "$rc_plain" -eq 0 ]; } &&
        cmp -s "$work/$name.plain" "$work/$name.fam"; then
        ok "$name"
    else
        failed "$name" "exit status $rc_plain without, $rc_fam with the library" \
            "$(diff "$work/$name.plain" "$work/$name.fam" | head -n 20)" \
            "$(tail -n 5 "$work/$name.plain.err")" "$(tail -n 5 "$work/$name.fam.err")"
    fi
}

# expect NAME WANT COMMAND...: passes when COMMAND exits with 0 and prints exactly WANT.
expect() {
    local name=$1 want=$2 rc=0 out
    shift 2
    out=$("$@" 2>"$work/$name.err" </dev/null) || rc=$?
    if [ "$rc" -eq 0 ] && [ "$out" = "$want" ]; then
        ok "$name"
    else
        failed "$name" "exit status $rc, output: $out" "$(tail -n 5 "$work/$name.err")"
    fi
}

# dies NAME OP COMMAND...: passes when COMMAND is killed by SIGABRT (status 134) after printing
# `fam-alloc: OP(0x...): ...` on stderr.
dies() {
    local name=$1 op=$2 rc=0
    shift 2
    { "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null; } 2>/dev/null || rc=$?
    if [ "$rc" -eq 134 ] && grep -q "^fam-alloc: $op(0x[0-9a-f]*): " "$work/$name.err"; then
        ok "$name"
    else
        failed "$name" "exit status $rc (want 134)" "stderr: $(head -c 300 "$work/$name.err")"
    fi
}

preload() { LD_PRELOAD=$lib "$@"; }

# --- The library itself ---------------------------------------------------------------------

want_symbols="aligned_alloc calloc fam_alloc fam_init_global_allocator fam_option_get fam_option_set fam_print_stats fam_release fam_resize fam_trim fam_version fam_write_stats free mallinfo mallinfo2 malloc malloc_trim malloc_usable_size mallopt memalign posix_memalign pvalloc realloc reallocarray valloc"
# C++ operator new and delete, every form, by their mangled names.
want_symbols="$want_symbols _ZdaPv _ZdaPvRKSt9nothrow_t _ZdaPvSt11align_val_t _ZdaPvSt11align_val_tRKSt9nothrow_t _ZdaPvm _ZdaPvmSt11align_val_t _ZdlPv _ZdlPvRKSt9nothrow_t _ZdlPvSt11align_val_t _ZdlPvSt11align_val_tRKSt9nothrow_t _ZdlPvm _ZdlPvmSt11align_val_t _Znam _ZnamRKSt9nothrow_t _ZnamSt11align_val_t _ZnamSt11align_val_tRKSt9nothrow_t _Znwm _ZnwmRKSt9nothrow_t _ZnwmSt11align_val_t _ZnwmSt11align_val_tRKSt9nothrow_t"
want_symbols=$(printf '%s\n' $want_symbols | LC_ALL=C sort -u | tr '\n' ' ')
symbols=$(nm -D --defined-only --format=posix "$lib" | awk '{ sub(/@.*/, "", $1); print $1 }' | LC_ALL=C sort -u | tr '\n' ' ')
if [ "$symbols" = "$want_symbols" ]; then
    ok exports
else
    failed exports "exported: $symbols" "wanted:   $want_symbols"
fi

# --- python3 --------------------------------------------------------------------------------

export PYTHONHASHSEED=0
same python-workload "$python" "$here/programs/workload.py"

py_tests=()
for t in test_list test_dict test_set test_json test_re test_collections test_unicode \
    test_bytes test_pickle test_itertools test_sort test_fork1 test_thread test_mmap test_gc \
    test_weakref; do
    if "$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('test.$t') is None)" 2>/dev/null; then
        py_tests+=("$t")
    fi
done
# The pass/fail lines of a run of the standard library's tests, in a fixed order.
python_tests() {
    "$python" -m test -j2 "${py_tests[@]}" 2>&1 | awk '
        match($0, /\] test_[a-z0-9_]+ [a-z]+/) { n = split(substr($0, RSTART + 2, RLENGTH - 2), w, " "); print w[1], w[2]; next }
        /^(Total tests|Total test files|Result):/ { print }
        /^All [0-9]+ tests OK/ { print }
        /^[0-9]+ tests? (OK|failed|skipped)/ { print }' | sort
}
if [ ${#py_tests[@]} -eq 0 ]; then
    failed python-stdlib-tests "none of the chosen tests is installed"
else
    same_status python-stdlib-tests python_tests
fi

# --- bash -----------------------------------------------------------------------------------

same bash-pipelines bash "$here/programs/pipelines.sh"

# --- git ------------------------------------------------------------------------------------

git_workload() (
    export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
    export GIT_AUTHOR_NAME="A U Thor" GIT_AUTHOR_EMAIL=author@example.com
    export GIT_COMMITTER_NAME="C O Mitter" GIT_COMMITTER_EMAIL=committer@example.com
    repo=$(mktemp -d "$work/git.XXXXXX")
    cd "$repo"
    git init -q -b main .
    git config gc.auto 0
    for i in $(seq 1 200); do
        mkdir -p "dir$((i % 7))"
        seq "$i" $((i * 3)) >"dir$((i % 7))/file$((i % 23)).txt"
        printf 'commit %d\n' "$i" >>log.txt
        if [ $((i % 10)) -eq 0 ]; then rm -f "dir$(((i / 10) % 7))/file$((i % 23)).txt"; fi
        git add -A
        GIT_AUTHOR_DATE="@$((1700000000 + i * 60)) +0000" GIT_COMMITTER_DATE="@$((1700000000 + i * 60)) +0000" \
            git commit -q -m "commit $i" -m "$(seq "$i" | tail -n 3 | tr '\n' ' ')"
    done
    git log --oneline | wc -l
    git rev-parse HEAD
    git log --format='%h %an %s' -n 3
    git log -p --stat | md5sum
    git diff --stat HEAD~100 HEAD | tail -n 1
    git gc -q
    git fsck --full --strict
    git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
    git log --oneline | wc -l
)
same git git_workload

# --- gcc ------------------------------------------------------------------------------------

gcc -O2 -c "$here/c/stress.c" -o "$work/stress-plain.o" 2>"$work/gcc-plain.err" && gcc_plain=0 || gcc_plain=$?
preload gcc -O2 -c "$here/c/stress.c" -o "$work/stress-fam.o" 2>"$work/gcc-fam.err" && gcc_fam=0 || gcc_fam=$?
if [ "$gcc_plain" -eq 0 ] && [ "$gcc_fam" -eq 0 ] && cmp -s "$work/stress-plain.o" "$work/stress-fam.o"; then
    ok gcc-compile
else
    failed gcc-compile "exit status $gcc_plain without, $gcc_fam with the library; objects differ or missing" \
        "$(tail -n 5 "$work/gcc-fam.err")"
fi
if preload gcc "$work/stress-fam.o" -o "$work/stress" -lpthread 2>"$work/gcc-link.err"; then
    ok gcc-link
else
    failed gcc-link "$(tail -n 5 "$work/gcc-link.err")"
fi

# --- sqlite3 --------------------------------------------------------------------------------

awk 'BEGIN {
    srand(7)
    print "CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);"
    print "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer INTEGER NOT NULL REFERENCES customers(id), amount INTEGER NOT NULL, note TEXT);"
    print "BEGIN;"
    for (i = 1; i <= 500; i++) printf "INSERT INTO customers VALUES(%d, %cname-%d%c, %ccity-%d%c);\n", i, 39, i, 39, 39, i % 17, 39
    x = 1
    for (i = 1; i <= 10000; i++) {
        x = (x * 48271) % 2147483647
        printf "INSERT INTO orders VALUES(%d, %d, %d, %cnote %d %s%c);\n", i, 1 + x % 500, x % 100000, 39, i, substr("abcdefghijklmnopqrstuvwxyz", 1 + x % 26), 39
    }
    print "COMMIT;"
    print "CREATE INDEX orders_customer ON orders(customer);"
    print "CREATE INDEX orders_amount ON orders(amount);"
    print "CREATE INDEX customers_city ON customers(city);"
    print "SELECT count(*), sum(amount), min(amount), max(amount) FROM orders;"
    print "SELECT c.city, count(*), sum(o.amount), round(avg(o.amount), 2) FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.city ORDER BY c.city;"
    print "SELECT c.name, count(o.id) AS n, sum(o.amount) AS total FROM customers c LEFT JOIN orders o ON o.customer = c.id GROUP BY c.id ORDER BY total DESC, c.name LIMIT 10;"
    print "SELECT substr(note, -1), count(*) FROM orders WHERE amount > (SELECT avg(amount) FROM orders) GROUP BY 1 ORDER BY 1;"
    print "UPDATE orders SET amount = amount + 1 WHERE customer % 3 = 0;"
    print "DELETE FROM orders WHERE amount < 1000;"
    print "SELECT count(*), sum(amount) FROM orders;"
    print "SELECT customer, amount, rank() OVER (PARTITION BY customer % 5 ORDER BY amount DESC) AS r FROM orders ORDER BY r, customer, amount LIMIT 10;"
    print "SELECT group_concat(name, \",\") FROM (SELECT name FROM customers WHERE id % 50 = 0 ORDER BY name);"
    print "PRAGMA integrity_check;"
}' >"$work/workload.sql"
sqlite_workload() {
    local db
    db=$(mktemp "$work/db.XXXXXX")
    rm -f "$db"
    sqlite3 -batch -bail "$db" <"$work/workload.sql"
}
same sqlite3 sqlite_workload

# --- stress.c -------------------------------------------------------------------------------

# compile NAME SOURCE FLAGS...: builds $work/NAME with gcc; a failure is the failed check
# NAME-compile, and the checks that need the program are left out.
compile() {
    local name=$1 src=$2 compiler=gcc
    shift 2
    [ "${src##*.}" = cc ] && compiler=g++
    if "$compiler" -o "$work/$name" "$src" "$@" 2>"$work/$name.compile.err"; then
        return 0
    fi
    failed "$name-compile" "$(head -n 10 "$work/$name.compile.err")"
    return 1
}
with_static=(-L"$target/release" -l:libfam_malloc.a -lpthread -ldl -lm)

stress_args=(10 20)
want_stress="stress: 16 threads, 10 rounds, scale 20, 10 forks: ok"
if compile stress-plain "$here/c/stress.c" -O2 -lpthread; then
    expect stress-glibc "$want_stress" "$work/stress-plain" "${stress_args[@]}"
    expect stress-preload "$want_stress" preload "$work/stress-plain" "${stress_args[@]}"
fi
if compile stress-static "$here/c/stress.c" -O2 "${with_static[@]}"; then
    if nm -D --defined-only "$work/stress-static" | grep -qw malloc; then
        ok static-link-interposes
    else
        failed static-link-interposes "a program linked with libfam_malloc.a does not export malloc to the C library"
    fi
    expect stress-static "$want_stress" "$work/stress-static" "${stress_args[@]}"
fi
expect stress-gcc-built "$want_stress" preload "$work/stress" "${stress_args[@]}"

# --- reentry.c ------------------------------------------------------------------------------

want_reentry="reentry: 40 keys, 8 threads x 5 rounds: ok"
if compile reentry "$here/c/reentry.c" -O2 -lpthread; then
    expect reentry-glibc "$want_reentry" "$work/reentry"
    expect reentry-preload "$want_reentry" preload "$work/reentry"
fi
if compile reentry-static "$here/c/reentry.c" -O2 "${with_static[@]}"; then
    expect reentry-static "$want_reentry" "$work/reentry-static"
fi

# --- api.c ----------------------------------------------------------------------------------

api_flags=(-O2 -Wall -Wextra -Werror -I"$crate/include")
if compile api-static "$here/c/api.c" "${api_flags[@]}" "${with_static[@]}"; then
    expect api-static "api: ok" "$work/api-static"
fi
# The library's soname is libfam_malloc.so.0, which cargo does not lay out: link against a
# directory that has the usual names, as an install (`cargo xtask install`) does.
mkdir -p "$work/lib"
ln -sf "$lib" "$work/lib/libfam_malloc.so.0"
ln -sf libfam_malloc.so.0 "$work/lib/libfam_malloc.so"
if compile api-shared "$here/c/api.c" "${api_flags[@]}" -L"$work/lib" -lfam_malloc -Wl,-rpath,"$work/lib"; then
    expect api-shared "api: ok" "$work/api-shared"
fi

# --- misuse.c -------------------------------------------------------------------------------

if compile misuse "$here/c/misuse.c" -O0 -w; then
    for case in double-free:free double-free-large:free free-stack:free free-global:free \
        free-interior:free free-interior-large:free realloc-foreign:realloc realloc-freed:realloc \
        usable-size-foreign:malloc_usable_size; do
        dies "misuse-${case%%:*}" "${case#*:}" preload "$work/misuse" "${case%%:*}"
    done
fi
if compile misuse-static "$here/c/misuse.c" -O0 -w "${with_static[@]}"; then
    dies misuse-static-double-free free "$work/misuse-static" double-free
    dies misuse-static-free-global free "$work/misuse-static" free-global
fi

# --- cxx.cc --------------------------------------------------------------------------------

cxx_flags=(-std=c++17 -O2 -Wall -Wextra -Wno-use-after-free -Wno-mismatched-new-delete)
if compile cxx "$here/c/cxx.cc" "${cxx_flags[@]}" -ldl; then
    expect cxx-preload "cxx: ok" preload "$work/cxx"
    dies cxx-double-delete "operator delete" preload "$work/cxx" double
    dies cxx-interior-delete "operator delete" preload "$work/cxx" interior
fi
if compile cxx-static "$here/c/cxx.cc" "${cxx_flags[@]}" "${with_static[@]}"; then
    expect cxx-static "cxx: ok" "$work/cxx-static" static
fi

# --- Statistics at exit (FAM_STATS) ---------------------------------------------------------

# stats_report NAME FORMAT PATTERN COMMAND...: with FAM_STATS=FORMAT, the report lands on stderr
# (PATTERN matches a line of it) and stdout is what it is without the library.
stats_report() {
    local name=$1 format=$2 pattern=$3 rc=0
    shift 3
    FAM_STATS=$format LD_PRELOAD=$lib "$@" >"$work/$name.out" 2>"$work/$name.err" </dev/null || rc=$?
    if [ "$rc" -eq 0 ] && grep -Eq "$pattern" "$work/$name.err"; then
        ok "$name"
    else
        failed "$name" "exit status $rc" "stderr: $(head -c 300 "$work/$name.err")"
    fi
}
stats_report stats-ls-bmalloc bmalloc '^V Memory Statistics \(fam-alloc [0-9]' ls -l /
stats_report stats-sort-table 1 '^fam-alloc [0-9.]+: memory statistics' sort "$here/programs/pipelines.sh"
stats_report stats-python-json json '"version": "[0-9]' "$python" -c 'print(sum(len(str(i)) for i in range(100000)))'
rc=0
FAM_STATS=json FAM_STATS_FILE="$work/stats-file.json" LD_PRELOAD=$lib ls / >/dev/null 2>"$work/stats-file.err" || rc=$?
if [ "$rc" -eq 0 ] && [ ! -s "$work/stats-file.err" ] &&
    "$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d["totals"]["allocs"] > 0 else 1)' "$work/stats-file.json"; then
    ok stats-file
else
    failed stats-file "exit status $rc" "stderr: $(head -c 300 "$work/stats-file.err")"
fi
rc=0
LD_PRELOAD=$lib ls / >/dev/null 2>"$work/stats-none.err" || rc=$?
if [ "$rc" -eq 0 ] && [ ! -s "$work/stats-none.err" ]; then
    ok stats-off-by-default
else
    failed stats-off-by-default "exit status $rc" "stderr: $(head -c 300 "$work/stats-none.err")"
fi

summary
