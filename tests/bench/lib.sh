# shellcheck shell=bash
# Shared helpers for the benchmark scripts in tests/bench (sourced, not run).
# Sets: bench_dir, repo_root, bench_cache, timeit. Needs `set -euo pipefail`
# in the caller.

bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$bench_dir/../.." && pwd)
# Compiled helpers and results live here; never in the project's build/ dir.
bench_cache=${BENCH_CACHE:-$repo_root/build-bench}
# shellcheck disable=SC2034  # used by the scripts that source this file
timeit=$bench_cache/timeit

bench_log() { printf '%s\n' "$*" >&2; }
bench_die() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# Compiles a C helper from tests/bench into the cache when the source is newer.
bench_build_c() {
  local name=$1
  shift
  local src=$bench_dir/$name.c bin=$bench_cache/$name
  mkdir -p "$bench_cache"
  if [ ! -x "$bin" ] || [ "$src" -nt "$bin" ]; then
    command -v cc >/dev/null || bench_die "cc not found; run deploy/install-deps.sh"
    cc -O2 -Wall -Wextra -std=c11 -o "$bin.tmp" "$src" "$@"
    mv -f "$bin.tmp" "$bin"
  fi
}

# Prints field N (1-based) of the machine line labelled LABEL in FILE.
# Fields: label runs failed min median p90 max wall_s per_second.
bench_field() {
  awk -v l="$2" -v f="$3" '$1 == l { v = $f } END { if (v != "") print v }' "$1"
}

# Prints A/B with one decimal, or "n/a" when either is missing or B is zero.
bench_ratio() {
  awk -v a="${1:-}" -v b="${2:-}" 'BEGIN {
    if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'
}
