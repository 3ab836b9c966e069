#!/usr/bin/env bash
# MCP benchmark: the round trip of a workspace_exec tool call through
# `corral mcp` (stdio; the official MCP TypeScript SDK as the client, from
# tests/js/bench_mcp_rtt.mjs), beside the same `true` through `corral exec`, in one running
# sandbox of a daemon started from a build directory. Prints medians, p90s
# and the ratio. Never asserts on time. Needs Node.js 20 and tests/js
# installed (tests/js/install.sh). Must run as root; the clients run as
# nobody.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-n RUNS] [BUILD_DIR]
  BUILD_DIR  where bin/corrald, bin/corral and bin/corral-mcp are
             (default \$CORRAL_BUILD or <repo>/build)
  -n RUNS    timed calls each way (default 200)
USAGE
  exit 2
}

bench_runs_and_build 200 "$@"
[ -d "$repo_root/tests/js/node_modules/@modelcontextprotocol/sdk" ] ||
  bench_die "run tests/js/install.sh first (Node.js 20)"
bench_setup_daemon_run mcp "$build_arg"
# corral mcp never runs as root: both sides run as nobody, whom a socket of
# mode 0666 admits.
printf '[daemon]\nsocket_mode = 0o666\n' >"$work/corrald.toml"
bench_start_daemon --config "$work/corrald.toml"
chmod 755 "$work"
home=$(mktemp -d)
chown 65534:65534 "$home"
nobody() {
  HOME=$home npm_config_cache=$home/npm \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}
id=$(nobody "$corral" --socket "$socket" create)
echo "$id" >>"$ids"
out=$(cd "$repo_root/tests/js" && CORRAL_BIN=$corral CORRAL_SOCKET=$socket \
  CORRAL_SANDBOX=$id RUNS=$runs nobody node bench_mcp_rtt.mjs)
rm -rf "$home"
mcp=$(echo "$out" | awk '$1 == "mcp-exec" { print $3 }')
mcp90=$(echo "$out" | awk '$1 == "mcp-exec" { print $4 }')
# The CLI from this shell: a process per call, as an agent's shell tool
# would run it (timed with bash's clock, which forks nothing).
for i in $(seq $((runs + 5))); do
  t0=${EPOCHREALTIME/./}
  nobody "$corral" --socket "$socket" exec "$id" -- true
  t1=${EPOCHREALTIME/./}
  [ "$i" -le 5 ] || echo $((t1 - t0))
done | sort -n >"$work/cli-us"
cli_ms=$(awk '{ a[NR] = $1 } END { printf "%.3f", a[int(NR / 2) + 1] / 1000 }' "$work/cli-us")
cli90=$(awk '{ a[NR] = $1 } END { printf "%.3f", a[int(NR * 0.9) + 1] / 1000 }' "$work/cli-us")
printf 'mcp-exec %s %s %s\ncli-exec %s %s %s\n' "$runs" "$mcp" "$mcp90" \
  "$runs" "$cli_ms" "$cli90" >"$results"
echo "== exec round trip, $runs calls each (runtime linux)"
echo "  MCP workspace_exec (one corral mcp session): median $mcp ms (p90 $mcp90 ms)"
echo "  corral exec ID -- true (a process per call): median $cli_ms ms (p90 $cli90 ms)"
echo "  MCP / CLI: $(bench_ratio "$mcp" "$cli_ms")"
