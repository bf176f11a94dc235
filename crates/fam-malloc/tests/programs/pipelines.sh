# A bash workload that forks without exec (subshells, command substitution, pipelines, background
# jobs) and allocates a lot inside bash itself (strings, arrays, associative arrays). Its output
# depends only on the script, so it must be the same under any correct allocator.
set -euo pipefail

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

words=(alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu)

# A deterministic word stream: a linear congruential generator in shell arithmetic.
stream() {
    local n=$1 x=12345 i
    for ((i = 0; i < n; i++)); do
        x=$(((x * 1103515245 + 12345) % 2147483648))
        echo "${words[x % ${#words[@]}]}$((x % 7))"
    done
}

# Pipelines through sort, uniq and wc.
stream 3000 | sort | uniq -c | sort -k1,1nr -k2 | head -n 5
echo "distinct: $(stream 3000 | sort -u | wc -l)"
echo "lines with a: $(stream 3000 | grep -c a)"

# Subshells: changes inside do not leak out; command substitutions nest.
total=0
for i in $(seq 1 200); do
    (total=$((total + i)); exit 0)
    total=$((total + $(echo "$i" | tr -d '\n')))
done
echo "total: $total"
echo "nested: $(echo "$(echo "$(echo deep | tr a-z A-Z)")-$(($(seq 3 | paste -sd+)))")"

# Background jobs that each fork more, waited for in order.
for j in 1 2 3 4; do
    (stream $((j * 300)) | sort | md5sum | cut -c1-8 > "$tmp/job$j") &
done
wait
for j in 1 2 3 4; do echo "job $j: $(cat "$tmp/job$j")"; done

# Strings and arrays grown inside bash (its own malloc calls).
s=""
for ((i = 0; i < 3000; i++)); do s+="${words[i % 12]}:"; done
echo "string: ${#s} $(printf '%s' "$s" | md5sum | cut -c1-12)"
declare -A seen=()
while read -r w; do
    seen[$w]=$((${seen[$w]:-0} + 1))
done < <(stream 4000)
for k in $(printf '%s\n' "${!seen[@]}" | sort | head -n 4); do echo "seen $k ${seen[$k]}"; done
echo "keys: ${#seen[@]}"
arr=()
for ((i = 0; i < 2000; i++)); do arr+=("item-$i"); done
unset 'arr[5]' 'arr[500]'
echo "array: ${#arr[@]} ${arr[1999]} ${arr[*]:10:3}"

# Here-documents and here-strings.
while IFS=, read -r name n; do
    echo "$name=$((n * n))"
done <<EOF
one,1
two,2
three,$(( $(wc -l <<<"$(seq 3)") ))
EOF
cat <<'EOF' | sed 's/x/y/g' | tr '\n' ' '
unexpanded $HOME x
xx xxx
EOF
echo
read -r line <<<"a here-string, reversed"
reversed=""
for ((i = ${#line} - 1; i >= 0; i--)); do reversed+="${line:i:1}"; done
echo "$reversed"

# A pipeline of functions, each a forked bash.
upper() { tr a-z A-Z; }
number() { awk '{ printf "%d %s\n", NR, $0 }'; }
stream 20 | upper | number | tail -n 3
