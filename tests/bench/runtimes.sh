#!/usr/bin/env bash
# Time to first command and exec round trip on the container runtimes, each
# beside the tool it wraps, called directly in the same script on the same
# busybox rootfs:
#   oci (runc)  `corral run --runtime oci -- true`   vs `runc run` of a bundle
#               `corral exec ID -- true`             vs `runc exec CID true`
#   oci (crun)  the same against crun (in a private mount namespace without
#               the controller-less cgroup2 mount on hybrid hosts, as the
#               plugin runs it)
#   docker      `corral run --runtime docker`        vs `docker run --rm
#               --network none IMG true`; exec       vs `docker exec CID true`
#   linux       `corral run`/`corral exec` on the default runtime, for scale
# and prints each ratio. The target (issue 5) is under 10% overhead. Never
# asserts on time: the exit status says whether the benchmark ran.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-n RUNS] [-d DOCKER_SOCKET] [BUILD_DIR]
  BUILD_DIR  where bin/corrald and bin/corral are (default <repo>/build)
  -n RUNS    timed runs per measurement (default \$BENCH_RUNS or 50)
  -d SOCKET  the Docker engine to use (default
             /run/corral-test-engines/docker.sock, started by
             tests/engines.sh start)
Must run as root. Results: \$BENCH_CACHE/runtimes.txt (machine lines).
USAGE
  exit 2
}

runs=${BENCH_RUNS:-50}
docker_socket=/run/corral-test-engines/docker.sock
while getopts "n:d:h" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    d) docker_socket=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
case $runs in '' | *[!0-9]* | 0) usage ;; esac

bench_setup_daemon_run runtimes "${1:-}"
bench_build_c timeit
: >"$results"

# The rootfs every side runs: the project's busybox image.
tar=$build/images/busybox.tar
bash "$repo_root/deploy/images/build-busybox.sh" "$tar" >/dev/null
rootfs=$work/rootfs
mkdir -p "$rootfs"
tar -C "$rootfs" -xf "$tar"

measure() {
  local label=$1
  shift
  local line
  if ! line=$("$timeit" -m -w 2 -n "$runs" -t 60 -l "$label" -- "$@"); then
    bench_log "$label: failed (command: $*)"
    return 1
  fi
  printf '%s\n' "$line" >>"$results"
  # shellcheck disable=SC2086  # the machine line is split on purpose
  set -- $line
  printf '  %-22s median %8.2f ms  (min %.2f, p90 %.2f, n=%s)\n' "$1" "$5" "$4" "$6" "$2"
}

median() { bench_field "$results" "$1" 5; }

ratio_line() {
  local what=$1 ours=$2 peer=$3
  local a b
  a=$(median "$ours")
  b=$(median "$peer")
  [ -n "$a" ] && [ -n "$b" ] || return 0
  local r
  r=$(bench_ratio "$a" "$b")
  printf '  %-34s %8.2f / %8.2f ms = %sx\n' "$what" "$a" "$b" "$r"
  summary+=("$what: corral $a ms, direct $b ms, ratio $r")
}

# The daemon for one runtime configuration; sandboxes run the busybox image.
start_daemon_with() {
  # bench_stop_daemon is written for the EXIT trap, where errors are ignored.
  set +e
  bench_stop_daemon
  set -e
  : >"$ids"
  rm -rf --one-file-system "$state" || bench_die "cannot remove $state"
  printf '%s\n' "$1" >"$work/corrald.toml"
  bench_start_daemon --config "$work/corrald.toml"
  cli image import busybox "$tar" >/dev/null
}

# Corral's side for RUNTIME, labels PREFIX-ttfc and PREFIX-exec.
measure_corral() {
  local runtime=$1 prefix=$2
  measure "$prefix-ttfc" "$corral" --socket "$socket" run --runtime "$runtime" \
    --image busybox -- true || return 1
  local id
  id=$(cli create --runtime "$runtime" --image busybox) || return 1
  echo "$id" >>"$ids"
  measure "$prefix-exec" "$corral" --socket "$socket" exec "$id" -- true
  cli rm "$id" >/dev/null
}

# An OCI bundle for the direct runs: busybox read-only, no network, the
# runtime's own defaults otherwise (what a user calling runc gets).
make_bundle() {
  local bundle=$work/bundle-$1 args=$2
  mkdir -p "$bundle"
  (cd "$bundle" && runc spec)
  python3 - "$bundle/config.json" "$rootfs" "$args" <<'PY'
import json, sys
path, rootfs, args = sys.argv[1], sys.argv[2], sys.argv[3]
spec = json.load(open(path))
spec["root"] = {"path": rootfs, "readonly": True}
spec["process"]["terminal"] = False
spec["process"]["args"] = args.split()
spec["linux"].setdefault("resources", {})
json.dump(spec, open(path, "w"))
PY
  echo "$bundle"
}

# The command that runs crun directly. On a hybrid cgroup host crun needs the
# controller-less cgroup2 mount out of sight (PLATFORM.md), in a private
# mount namespace, as the plugin runs it.
crun_runner() {
  if awk '$9 == "cgroup2" && $5 == "/sys/fs/cgroup/unified" { f = 1 } END { exit !f }' /proc/self/mountinfo; then
    cat >"$work/crun-private" <<'SH'
#!/bin/sh
exec unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified && exec crun "$@"' crun "$@"
SH
    chmod 0755 "$work/crun-private"
    echo "$work/crun-private"
  else
    command -v crun
  fi
}

summary=()
echo "runtimes bench: $runs runs each, $(nproc) cores, kernel $(uname -r), busybox rootfs"

# --- linux, for scale
start_daemon_with ""
echo "linux:"
measure_corral linux linux || true

# --- oci, runc and crun
for oci in runc crun; do
  if ! command -v "$oci" >/dev/null; then
    bench_log "skip oci-$oci: $oci not installed"
    continue
  fi
  echo "oci ($oci):"
  start_daemon_with "$(printf '[runtimes.oci]\nruntime = "%s"\n' "$oci")"
  if ! cli runtimes | awk '$1 == "oci" && $2 == "yes" { f = 1 } END { exit !f }'; then
    bench_log "skip oci-$oci: $(cli runtimes | awk '$1 == "oci"')"
    continue
  fi
  measure_corral oci "oci-$oci" || continue
  runner=("$oci")
  [ "$oci" = crun ] && runner=("$(crun_runner)")
  root=$work/$oci-state
  bundle=$(make_bundle "$oci-true" true)
  measure "$oci-run" "${runner[@]}" --root "$root" run --bundle "$bundle" "bench-$oci-run" || true
  bundle=$(make_bundle "$oci-sleep" "sleep 100000")
  "${runner[@]}" --root "$root" run -d --bundle "$bundle" "bench-$oci-exec" </dev/null >/dev/null 2>&1
  measure "$oci-exec" "${runner[@]}" --root "$root" exec "bench-$oci-exec" true || true
  "${runner[@]}" --root "$root" delete -f "bench-$oci-exec" >/dev/null 2>&1 || true
  ratio_line "oci ($oci) time to first command" "oci-$oci-ttfc" "$oci-run"
  ratio_line "oci ($oci) exec round trip" "oci-$oci-exec" "$oci-exec"
done

# --- docker
docker_cli=(docker -H "unix://$docker_socket")
if [ -S "$docker_socket" ] && "${docker_cli[@]}" version >/dev/null 2>&1; then
  echo "docker ($docker_socket):"
  start_daemon_with "$(printf '[runtimes.docker]\nsocket = "%s"\n' "$docker_socket")"
  measure_corral docker docker-corral || true
  image=corral-bench-busybox:latest
  "${docker_cli[@]}" import - "$image" <"$tar" >/dev/null
  measure docker-run "${docker_cli[@]}" run --rm --network none "$image" true || true
  cid=$("${docker_cli[@]}" run -d --network none "$image" sleep 100000)
  measure docker-exec "${docker_cli[@]}" exec "$cid" true || true
  "${docker_cli[@]}" rm -f "$cid" >/dev/null
  "${docker_cli[@]}" rmi "$image" >/dev/null 2>&1 || true
  ratio_line "docker time to first command" docker-corral-ttfc docker-run
  ratio_line "docker exec round trip" docker-corral-exec docker-exec
else
  bench_log "skip docker: no engine answers on $docker_socket (run tests/engines.sh start)"
fi

echo
echo "ratios (corral / direct; target < 1.10):"
for line in "${summary[@]}"; do echo "  $line"; done
