#!/usr/bin/env bash
# Times the peers Corral's linux runtime is compared with: start a sandbox,
# run `true`, tear it down. Prints min/median/p90/max in ms for each and the
# ratios between them. Never asserts on time.
#
#   tests/bench/peers.sh [-n RUNS] [-o FILE]
#
# Peers: plain fork/exec of /bin/true (the floor); rawns (tests/bench/rawns.c:
# the smallest honest namespace sandbox: 6 namespaces, tmpfs root with a
# read-only /usr, /dev, /proc, pivot_root, no_new_privs, seccomp), as root and
# with a user namespace; unshare(1) with pid, mount, net, ipc, uts and cgroup
# namespaces (as root, and with a user namespace); and bubblewrap with
# --unshare-all and a read-only /usr. Peers whose tool is missing or fails
# here are skipped with a message.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-n RUNS] [-o FILE]
  -n RUNS  timed runs per peer (default \$BENCH_RUNS or 200)
  -o FILE  also write machine-readable lines (see tests/bench/timeit.c -m)
           to FILE (default \$BENCH_CACHE/peers.txt)
Environment: BENCH_CACHE (default <repo>/build-bench) holds the compiled
timing helper and the results.
USAGE
  exit 2
}

runs=${BENCH_RUNS:-200}
results=
while getopts "n:o:h" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    o) results=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
case $runs in '' | *[!0-9]* | 0) usage ;; esac

bench_build_c timeit
bench_build_c rawns
results=${results:-$bench_cache/peers.txt}
mkdir -p "$(dirname "$results")"
: >"$results.tmp"

# Runs one peer: LABEL COMMAND... ; appends its machine line to the results
# and prints the human line.
peer() {
  local label=$1
  shift
  if ! command -v "$1" >/dev/null; then
    bench_log "skip $label: $1 not installed"
    return 0
  fi
  local line
  if ! line=$("$timeit" -m -n "$runs" -l "$label" -- "$@"); then
    bench_log "skip $label: it fails on this host (command: $*)"
    return 0
  fi
  printf '%s\n' "$line" >>"$results.tmp"
  # shellcheck disable=SC2086  # the machine line is split on purpose
  set -- $line
  printf '%-16s n=%-4s min %7.2f  median %7.2f  p90 %7.2f  max %7.2f ms\n' \
    "$1" "$2" "$4" "$5" "$6" "$7"
}

bwrap_args=(--unshare-all --die-with-parent --ro-bind /usr /usr
  --symlink usr/bin /bin --symlink usr/lib /lib)
[ -e /usr/lib64 ] && bwrap_args+=(--symlink usr/lib64 /lib64)
bwrap_args+=(--proc /proc --dev /dev)

ns_args=(--pid --fork --mount --net --ipc --uts)
unshare --cgroup true 2>/dev/null && ns_args+=(--cgroup)

echo "peers: start a sandbox and run true, $runs runs each, $(nproc) cores, kernel $(uname -r)"
peer fork-exec /bin/true
peer rawns "$bench_cache/rawns" true
peer rawns-userns "$bench_cache/rawns" -u true
if [ "$(id -u)" -eq 0 ]; then
  peer unshare unshare "${ns_args[@]}" true
fi
peer unshare-userns unshare --user --map-root-user "${ns_args[@]}" true
peer bwrap bwrap "${bwrap_args[@]}" true
mv -f "$results.tmp" "$results"

median() { bench_field "$results" "$1" 5; }
echo "ratios of medians:"
for p in rawns rawns-userns unshare unshare-userns bwrap; do
  [ -n "$(median "$p")" ] || continue
  printf '  %-16s %sx fork-exec\n' "$p" "$(bench_ratio "$(median "$p")" "$(median fork-exec)")"
done
if [ -n "$(median bwrap)" ] && [ -n "$(median unshare)" ]; then
  printf '  %-16s %sx unshare\n' bwrap "$(bench_ratio "$(median bwrap)" "$(median unshare)")"
fi
echo "results: $results"
