#!/bin/bash
# Kernel benchmarks of two builds in turn, for machines too noisy for one run to mean much
# (issue #4): each benchmark matching FILTER runs REPS times per build, alternating, and the
# minimum real time of each build is printed with old / new.
#
#   bench/ab_kernels.sh OLD_BUILD NEW_BUILD FILTER [REPS]
#   e.g. git worktree add /tmp/old HEAD~1 && cmake -S /tmp/old -B /tmp/old/build -G Ninja \
#          -DCMAKE_BUILD_TYPE=Release && ninja -C /tmp/old/build tqx_kernel_bench
#        bench/ab_kernels.sh /tmp/old/build build 'BM_Conv7/avx2/.*g:144$' 3
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 OLD_BUILD NEW_BUILD FILTER [REPS]" >&2
  exit 2
fi
old="$1/bench/tqx_kernel_bench" new="$2/bench/tqx_kernel_bench" filter="$3" reps="${4:-3}"
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "$0: no benchmark binary at $b" >&2; exit 2; }
done
time_of() {  # real time of one benchmark, in its own unit
  "$1" --benchmark_filter="^$2\$" --benchmark_min_time=0.5 2>/dev/null | awk '/^BM_/ {print $2; exit}'
}
names=$("$new" --benchmark_list_tests --benchmark_filter="$filter")
[ -n "$names" ] || { echo "$0: no benchmark matches $filter" >&2; exit 2; }
for name in $names; do
  o="" n=""
  for _ in $(seq "$reps"); do
    t=$(time_of "$old" "$name"); o=$(printf '%s\n%s\n' "$o" "$t" | awk 'NF' | sort -g | head -1)
    t=$(time_of "$new" "$name"); n=$(printf '%s\n%s\n' "$n" "$t" | awk 'NF' | sort -g | head -1)
  done
  awk -v name="$name" -v o="$o" -v n="$n" 'BEGIN {printf "%-52s old %9.1f new %9.1f  old/new %.2f\n", name, o, n, o / n}'
done
