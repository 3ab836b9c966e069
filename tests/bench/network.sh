#!/usr/bin/env bash
# The egress path's cost, beside the same work without Corral in the way.
# Builds a private "internet" of two network namespaces (documentation
# addresses only: no packet leaves this machine), runs corrald in one of
# them and measures:
#   - create time with --network egress beside --network none (API-level,
#     corral_bench_api); the difference is what the network setup costs
#   - throughput of one large download through the egress proxy, from a
#     sandbox, beside the same download from the daemon's namespace directly
#   - connection rate (short connections one after another), likewise
# Prints the ratios; never asserts on time.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-c CREATES] [-m MIB] [-k CONNECTIONS] [-r RUNTIME] [BUILD_DIR]
  BUILD_DIR       where bin/corrald, bin/corral and bin/corral_bench_api are
                  (default \$CORRAL_BUILD or <repo>/build)
  -c CREATES      sandboxes created per mode (default 100)
  -m MIB          size of the download (default 1024)
  -k CONNECTIONS  short connections for the rate (default 2000)
  -r RUNTIME      runtime of the sandboxes (default linux)
Must run as root.
USAGE
  exit 2
}

creates=100
mib=1024
connections=2000
runtime=linux
while getopts "c:m:k:r:h" opt; do
  case $opt in
    c) creates=$OPTARG ;;
    m) mib=$OPTARG ;;
    k) connections=$OPTARG ;;
    r) runtime=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
build=$(readlink -f "${1:-${CORRAL_BUILD:-$repo_root/build}}")
[ "$(id -u)" -eq 0 ] || bench_die "must run as root"
bench_build_c netblast -static
netblast=$bench_cache/netblast
corral=$build/bin/corral
api=${CORRAL_BENCH_API:-$build/bin/corral_bench_api}
for f in "$build/bin/corrald" "$corral" "$api"; do
  [ -x "$f" ] || bench_die "missing $f (build the project first)"
done

work=$(mktemp -d "$bench_cache/net.XXXXXX")
socket=$work/corrald.sock
state=$work/state
ids=$work/ids
: >"$ids"
daemon_pid=
suffix=$$
inet=cbench-inet-$suffix
host=cbench-host-$suffix
server_pids=

cleanup() {
  bench_stop_daemon
  for pid in $server_pids; do kill "$pid" 2>/dev/null || true; done
  ip netns del "$inet" 2>/dev/null || true
  ip netns del "$host" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- the private internet -----------------------------------------------------
ip netns add "$inet"
ip netns add "$host"
ip link add "cbh$suffix" netns "$host" type veth peer name "cbi$suffix" netns "$inet"
ip -n "$inet" link set lo up
ip -n "$inet" addr add 198.51.100.1/24 dev "cbi$suffix"
ip -n "$inet" addr add 203.0.113.10/32 dev lo
ip -n "$inet" link set "cbi$suffix" up
ip -n "$host" link set lo up
ip -n "$host" addr add 198.51.100.2/24 dev "cbh$suffix"
ip -n "$host" link set "cbh$suffix" up
ip -n "$host" route add 203.0.113.0/24 via 198.51.100.1
ip netns exec "$inet" "$netblast" serve 203.0.113.10 9000 $((mib << 20)) &
server_pids="$server_pids $!"
ip netns exec "$inet" "$netblast" serve 203.0.113.10 9001 64 &
server_pids="$server_pids $!"
sleep 0.2

# corrald in the host namespace, through a wrapper (bench_start_daemon runs
# "$corrald" as one word). nsenter, not `ip netns exec`: that one mounts a
# new /sys, which hides the host's cgroups from the daemon.
corrald=$work/corrald-in-netns
printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s %s "$@"\n' "$host" "$build/bin/corrald" >"$corrald"
chmod +x "$corrald"
printf '[network]\ndns_upstream = "198.51.100.53"\n' >"$work/corrald.toml"
bench_start_daemon --config "$work/corrald.toml"

echo "== create time, $creates each (corral_bench_api, runtime $runtime)"
for mode in none egress; do
  "$api" --socket "$socket" -n 1 -c "$creates" --runtime "$runtime" \
    --network "$mode" >"$work/api-$mode.txt"
  [ "$(bench_field "$work/api-$mode.txt" api-create 3)" = 0 ] ||
    bench_die "creates with --network $mode failed (see above)"
  echo "  $mode: median $(bench_field "$work/api-$mode.txt" api-create 5) ms (p90 $(bench_field "$work/api-$mode.txt" api-create 6) ms)"
done
none=$(bench_field "$work/api-none.txt" api-create 5)
egress=$(bench_field "$work/api-egress.txt" api-create 5)
awk -v a="$egress" -v b="$none" 'BEGIN { printf "  egress costs %+.2f ms per create (median), ratio %.2f\n", a - b, a / b }'

echo "== throughput and connection rate (runtime $runtime)"
id=$(timeout 60 "$corral" --socket "$socket" create --runtime "$runtime" --network egress)
echo "$id" >>"$ids"
timeout 60 "$corral" --socket "$socket" cp "$netblast" "$id:/workspace/netblast" >/dev/null
in_sandbox() {
  timeout 600 "$corral" --socket "$socket" exec "$id" -- sh -c 'chmod +x /workspace/netblast && exec /workspace/netblast "$@"' netblast "$@"
}
direct() { nsenter --net="/run/netns/$host" "$netblast" "$@"; }
through=$(in_sandbox get 203.0.113.10 9000)
plain=$(direct get 203.0.113.10 9000)
echo "  download of $mib MiB: through Corral $(echo "$through" | awk '{print $3}') MiB/s, direct $(echo "$plain" | awk '{print $3}') MiB/s, ratio $(bench_ratio "$(echo "$through" | awk '{print $3}')" "$(echo "$plain" | awk '{print $3}')")"
through=$(in_sandbox connects 203.0.113.10 9001 "$connections")
plain=$(direct connects 203.0.113.10 9001 "$connections")
echo "  $connections connections: through Corral $(echo "$through" | awk '{print $3}')/s, direct $(echo "$plain" | awk '{print $3}')/s, ratio $(bench_ratio "$(echo "$through" | awk '{print $3}')" "$(echo "$plain" | awk '{print $3}')")"
