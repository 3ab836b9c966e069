#!/usr/bin/env bash
# E2B gateway benchmark: Sandbox.create() then commands.run('echo hi')
# through `corral e2b` with E2B's JS SDK (tests/js/bench_e2b.mjs), beside the
# same through the CLI (`corral create --image e2b-base`, then `corral exec
# ID -- echo hi`, two processes as a script would run them), each sandbox
# removed untimed afterwards; one daemon from a build directory, the
# e2b-base image on the linux runtime. Prints medians, p90s and the ratio.
# Never asserts on time. Needs Node.js 20, tests/js installed
# (tests/js/install.sh) and BUILD_DIR/images/e2b-base.tar (tests/run.sh or
# deploy/images/build-e2b-base.sh). Must run as root; the clients run as
# nobody.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-n RUNS] [BUILD_DIR]
  BUILD_DIR  where bin/corrald, bin/corral and bin/corral-e2b are
             (default \$CORRAL_BUILD or <repo>/build)
  -n RUNS    timed sandboxes each way (default 20)
USAGE
  exit 2
}

bench_runs_and_build 20 "$@"
[ -d "$repo_root/tests/js/node_modules/e2b" ] ||
  bench_die "run tests/js/install.sh first (Node.js 20)"
bench_setup_daemon_run e2b "$build_arg"
image=$build/images/e2b-base.tar
[ -f "$image" ] || bench_die "no $image: run deploy/images/build-e2b-base.sh $image"
# The gateway never runs as root: both sides run as nobody, whom a socket
# of mode 0666 admits.
printf '[daemon]\nsocket_mode = 0o666\n' >"$work/corrald.toml"
bench_start_daemon --config "$work/corrald.toml"
chmod 755 "$work"
cli image import e2b-base "$image" >/dev/null
home=$(mktemp -d)
chown 65534:65534 "$home"
nobody() {
  HOME=$home npm_config_cache=$home/npm \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}
key=e2b_$(od -An -tx1 -N20 /dev/urandom | tr -d ' \n')
printf '[templates.base]\nimage = "e2b-base"\nruntime = "linux"\n' >"$home/e2b.toml"
chown 65534:65534 "$home/e2b.toml"
# setpriv execs corral, which execs corral-e2b: $! is the gateway.
HOME=$home setpriv --reuid=65534 --regid=65534 --clear-groups \
  "$corral" --socket "$socket" e2b --listen 127.0.0.1:0 --api-key "$key" \
  --config "$home/e2b.toml" </dev/null >/dev/null 2>"$work/e2b.log" &
gateway_pid=$!
trap 'kill "$gateway_pid" 2>/dev/null; rm -rf "$home"; bench_cleanup_daemon_run' EXIT
url=
for _ in $(seq 100); do
  url=$(grep -o 'http://[0-9.:]*' "$work/e2b.log" || true)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || bench_die "corral e2b did not start: $(cat "$work/e2b.log")"
out=$(cd "$repo_root/tests/js" && E2B_API_URL=$url E2B_SANDBOX_URL=$url \
  E2B_API_KEY=$key RUNS=$runs nobody node bench_e2b.mjs)
e2b=$(echo "$out" | awk '$1 == "e2b-create-run" { print $3 }')
e2b90=$(echo "$out" | awk '$1 == "e2b-create-run" { print $4 }')
e2b_create=$(echo "$out" | awk '$1 == "e2b-create" { print $3 }')
e2b_run=$(echo "$out" | awk '$1 == "e2b-run" { print $3 }')
for i in $(seq $((runs + 2))); do
  t0=${EPOCHREALTIME/./}
  id=$(nobody "$corral" --socket "$socket" create --runtime linux --image e2b-base)
  said=$(nobody "$corral" --socket "$socket" exec "$id" -- echo hi)
  t1=${EPOCHREALTIME/./}
  [ "$said" = hi ] || bench_die "corral exec said '$said'"
  nobody "$corral" --socket "$socket" rm "$id" >/dev/null
  [ "$i" -le 2 ] || echo $((t1 - t0))
done | sort -n >"$work/cli-us"
cli_ms=$(awk '{ a[NR] = $1 } END { printf "%.3f", a[int(NR / 2) + 1] / 1000 }' "$work/cli-us")
cli90=$(awk '{ a[NR] = $1 } END { printf "%.3f", a[int(NR * 0.9) + 1] / 1000 }' "$work/cli-us")
printf 'e2b-create-run %s %s %s\ncli-create-exec %s %s %s\n' "$runs" "$e2b" \
  "$e2b90" "$runs" "$cli_ms" "$cli90" >"$results"
echo "== create a sandbox and run echo hi in it, $runs sandboxes each (linux, e2b-base)"
echo "  E2B SDK through corral e2b: median $e2b ms (p90 $e2b90 ms): create $e2b_create ms, run $e2b_run ms"
echo "  corral create + corral exec: median $cli_ms ms (p90 $cli90 ms)"
echo "  E2B / CLI: $(bench_ratio "$e2b" "$cli_ms")"
