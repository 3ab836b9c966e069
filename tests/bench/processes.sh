#!/usr/bin/env bash
# Background-process benchmark. Starts corrald from a build directory on a
# temporary socket and state directory and measures, through the real CLI:
#   - output throughput of a background process (`corral exec -d`) that
#     writes MIB MiB, with nobody reading and with `corral attach` following
#     it, beside the same command run by `corral exec` in the foreground
#     (the same agent transport, no ring or log) and bare on the host
#   - how long a restarted daemon takes until it answers, with 32 running
#     background processes to resume, beside the same restart with none
# and prints the ratios. Never asserts on time.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-s MIB] [BUILD_DIR]
  BUILD_DIR  where bin/corrald and bin/corral are (default <repo>/build)
  -s MIB     output written by each measured command (default 256)
Results: \$BENCH_CACHE/processes.txt (default <repo>/build-bench). Must run
as root.
USAGE
  exit 2
}

size_mib=256
while getopts "s:h" opt; do
  case $opt in
    s) size_mib=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
case $size_mib in '' | *[!0-9]* | 0) usage ;; esac
bench_setup_daemon_run processes "${1:-}"
bytes=$((size_mib << 20))
writer="head -c $bytes /dev/zero"

# Waits until process $2 of sandbox $1 has exited (polling every 20 ms).
wait_exit() {
  while cli ps "$1" | awk -v p="$2" '$1 == p' | grep -q running; do
    sleep 0.02
  done
}

bench_start_daemon
id=$(cli create --ttl 3600)
echo "$id" >>"$ids"

echo "== output: $size_mib MiB"
t=$(now_ns)
p=$(cli exec -d "$id" -- sh -c "$writer")
wait_exit "$id" "$p"
detached_ms=$(since_ms "$t")
end=$(cli --json ps "$id" | grep -Ec "\"output_end\": ?\"$bytes\"" || true)
[ "$end" -ge 1 ] || bench_die "the background process did not report $bytes bytes of output"

t=$(now_ns)
p=$(cli exec -d "$id" -- sh -c "$writer")
cli attach "$id" "$p" >/dev/null
attached_ms=$(since_ms "$t")

t=$(now_ns)
cli exec --output-limit 1024 "$id" -- sh -c "$writer" >/dev/null
exec_ms=$(since_ms "$t")

t=$(now_ns)
sh -c "$writer" >/dev/null
bare_ms=$(since_ms "$t")

echo "== restart with 32 running background processes"
# The first restart has nothing to resume (the processes above exited and
# are only records); the second resumes 32 running ones.
# Kills the daemon, starts a new one and sets restart_ms to the time until
# it has answered a `ps` of the sandbox (which needs its processes resumed).
restart() {
  kill -KILL "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  local t
  t=$(now_ns)
  bench_start_daemon
  cli ps "$id" >/dev/null
  restart_ms=$(since_ms "$t")
}
for p in $(cli --json ps "$id" | grep -Eo '"process_id": ?"[0-9a-f]*"' | cut -d'"' -f4); do
  cli kill --rm "$id" "$p" >/dev/null
done
restart
restart_empty_ms=$restart_ms
for _ in $(seq 32); do cli exec -d "$id" -- sleep 3600 >/dev/null; done
restart
restart_32_ms=$restart_ms
running=$(cli ps "$id" | grep -c running || true)
[ "$running" -eq 32 ] || bench_die "after the restart $running of 32 processes run"

echo
printf '%-44s %8s %10s\n' "measure" "ms" "MiB/s"
printf '%-44s %8d %10s\n' "exec -d, nobody reading (to exit)" "$detached_ms" "$(rate "$size_mib" "$detached_ms")"
printf '%-44s %8d %10s\n' "exec -d + corral attach >/dev/null" "$attached_ms" "$(rate "$size_mib" "$attached_ms")"
printf '%-44s %8d %10s\n' "  corral exec (foreground) >/dev/null" "$exec_ms" "$(rate "$size_mib" "$exec_ms")"
printf '%-44s %8d %10s\n' "  bare on the host >/dev/null" "$bare_ms" "$(rate "$size_mib" "$bare_ms")"
printf '%-44s %8d\n' "restart to answering, 32 processes resumed" "$restart_32_ms"
printf '%-44s %8d\n' "  restart to answering, none to resume" "$restart_empty_ms"
echo
echo "background output: $(bench_ratio "$detached_ms" "$exec_ms")x foreground exec (nobody reading), $(bench_ratio "$attached_ms" "$exec_ms")x (attached)"
echo "restart: $(bench_ratio "$restart_32_ms" "$restart_empty_ms")x with 32 processes to resume"
{
  echo "detached_ms $detached_ms attached_ms $attached_ms exec_ms $exec_ms bare_ms $bare_ms size_mib $size_mib"
  echo "restart_32_ms $restart_32_ms restart_empty_ms $restart_empty_ms"
} >"$results"
