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

# Pids of every process below $1 (not $1 itself).
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      for (i in pids) {
        p = pids[i]; q = parent[p]
        while (q != "" && q != 0 && q != 1) {
          if (q == root) { print p; break }
          q = parent[q]
        }
      }
    }'
}

# Starts $corrald on $socket with state $state, logging to $work/corrald.log,
# and waits until it answers; sets daemon_pid. Extra arguments go to corrald.
bench_start_daemon() {
  "$corrald" --socket "$socket" --state-dir "$state" "$@" >"$work/corrald.log" 2>&1 &
  daemon_pid=$!
  # Ready when the socket answers an RPC that touches no sandbox.
  local ready=0 deadline=$((SECONDS + 20))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
      echo "corrald exited during start-up" >&2
      tail -n 20 "$work/corrald.log" >&2
      daemon_pid=
      exit 1
    fi
    if [ -S "$socket" ] && timeout 5 "$corral" --socket "$socket" version >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.1
  done
  [ "$ready" -eq 1 ] || bench_die "corrald did not answer \`corral version\` on $socket within 20 s"
}

# Removes the sandboxes listed in $ids (one id a line), stops the daemon,
# kills what it started and left behind, and unmounts what it left under
# $work. For EXIT traps; never fails.
bench_stop_daemon() {
  if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    # corrald leaves sandboxes running when it stops (they are re-attached by
    # the next daemon), so remove ours first.
    if [ -s "$ids" ]; then
      echo "cleanup: removing $(wc -l <"$ids") sandboxes" >&2
      while IFS= read -r id; do
        timeout 60 "$corral" --socket "$socket" rm "$id" >/dev/null 2>&1
      done <"$ids"
    fi
    local leftovers
    leftovers=$(descendants "$daemon_pid")
    kill -TERM "$daemon_pid"
    for _ in $(seq 50); do
      kill -0 "$daemon_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$daemon_pid" 2>/dev/null && kill -KILL "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null
    # Whatever the daemon started and did not destroy would now outlive it:
    # report it and end it (they are this run's processes, by pid).
    local pid leaked=0
    for pid in $leftovers; do
      if kill -0 "$pid" 2>/dev/null; then
        leaked=$((leaked + 1))
        kill -KILL "$pid" 2>/dev/null
      fi
    done
    [ "$leaked" -eq 0 ] || echo "cleanup: WARNING: $leaked sandbox processes outlived their sandboxes; killed" >&2
  fi
  # Mounts the daemon left under the work dir, deepest first.
  awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo |
    sort -r | while IFS= read -r mp; do umount -l "$mp" 2>/dev/null; done
}

# Keeps the daemon's log in the cache and, when the run failed ($1 != 0),
# shows its last lines.
bench_keep_log() {
  [ -f "$work/corrald.log" ] && cp -f "$work/corrald.log" "$bench_cache/corrald.log" 2>/dev/null
  if [ "$1" -ne 0 ] && [ -s "$work/corrald.log" ]; then
    echo "--- last lines of the daemon's log (all of it: $bench_cache/corrald.log)" >&2
    tail -n 20 "$work/corrald.log" >&2
  fi
  return 0
}

# For scripts whose only arguments are [-n RUNS] [BUILD_DIR]: sets runs
# (default $1) and build_arg from the rest; anything else calls the
# script's usage.
bench_runs_and_build() {
  runs=$1
  shift
  local opt OPTIND=1
  while getopts "n:h" opt; do
    case $opt in
      n) runs=$OPTARG ;;
      *) usage ;;
    esac
  done
  shift $((OPTIND - 1))
  [ $# -le 1 ] || usage
  case $runs in '' | *[!0-9]* | 0) usage ;; esac
  build_arg=${1:-}
}

# For a script that runs its own daemon: checks root and the build in $1
# (or $CORRAL_BUILD, or <repo>/build), makes a work directory
# $bench_cache/NAME.XXXXXX with the daemon's socket, state and sandbox list,
# and installs the EXIT trap that removes the sandboxes, stops the daemon
# and keeps its log. Sets build, corrald, corral, work, socket, state, ids,
# daemon_pid, results ($bench_cache/NAME.txt).
bench_setup_daemon_run() {
  local name=$1
  [ "$(id -u)" -eq 0 ] || bench_die "corrald must run as root"
  build=$(readlink -f "${2:-${CORRAL_BUILD:-$repo_root/build}}")
  corrald=$build/bin/corrald
  corral=$build/bin/corral
  [ -x "$corrald" ] && [ -x "$corral" ] || bench_die "build corrald and corral in $build first"
  mkdir -p "$bench_cache"
  work=$(mktemp -d "$bench_cache/$name.XXXXXX")
  socket=$work/corrald.sock
  state=$work/state
  ids=$work/ids
  : >"$ids"
  daemon_pid=
  results=$bench_cache/$name.txt
  trap bench_cleanup_daemon_run EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup_daemon_run() {
  local status=$?
  set +e
  bench_stop_daemon
  bench_keep_log "$status"
  rm -rf --one-file-system "$work"
  exit "$status"
}

# The CLI against the script's daemon.
cli() { timeout 600 "$corral" --socket "$socket" "$@"; }
now_ns() { date +%s%N; }
# Milliseconds since $1 (from now_ns).
since_ms() { echo $((($(now_ns) - $1) / 1000000)); }
# MiB/s for MIB in MS milliseconds.
rate() { awk -v m="$1" -v t="$2" 'BEGIN { if (t <= 0) t = 1; printf "%.0f", m * 1000 / t }'; }
