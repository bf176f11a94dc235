# suite.sh: what the C library's program suites (real-programs.sh, robustness.sh) share. Sourced,
# not run: sets `root` (the workspace, also the working directory) and `target` (the absolute
# cargo target directory: $CARGO_TARGET_DIR or the workspace's target/), and the reporting:
# `ok NAME`, `failed NAME WHY [DETAIL...]` (details printed below, indented), `skip NAME WHY`,
# and `summary`, which prints `N passed, N failed` and returns non-zero if any check failed.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-target}
case $target in
/*) ;;
*) target=$root/$target ;;
esac

passes=0
failures=0
skips=0
ok() {
    echo "ok $1"
    passes=$((passes + 1))
}
failed() {
    echo "FAILED $1: $2"
    failures=$((failures + 1))
    shift 2
    local line
    for line in "$@"; do
        [ -n "$line" ] && printf '%s\n' "$line" | sed 's/^/    /'
    done
    return 0
}
skip() {
    echo "skip $1: $2"
    skips=$((skips + 1))
}
summary() {
    echo "$passes passed, $failures failed"
    [ "$failures" -eq 0 ]
}
