#!/usr/bin/env bash
# The full Corral benchmark. Measures the peers (tests/bench/peers.sh), then
# starts corrald from a build directory on a temporary socket and state
# directory and measures, through the real CLI:
#   - TTFC: `corral run -- true` end to end (create, run, destroy)
#   - exec round trip in a running sandbox (`corral exec ID -- true`), beside
#     a CLI round trip that creates nothing (`corral ls`)
#   - creations per second: `corral create` then `corral rm`, sequential and
#     with several in flight
#   - memory per idle sandbox: host used memory and the PSS of the sandboxes'
#     processes, before and after creating K sandboxes, beside K idle
#     bubblewrap sandboxes
#   - the API-level TTFC and exec round trip (corral_bench_api) when built
# and prints each beside the peers as a ratio. Never asserts on time: the
# exit status says whether the benchmark ran, not whether targets were met.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-n RUNS] [-c CREATES] [-k IDLE] [-j PARALLEL] [-i IMAGE]
                [-t TAR] [-r RUNTIME] [-P] [BUILD_DIR]
  BUILD_DIR    where bin/corrald and bin/corral are
               (default \$CORRAL_BUILD or <repo>/build)
  -n RUNS      timed runs for TTFC and exec (default \$BENCH_RUNS or 200)
  -c CREATES   sandboxes per create/rm batch (default 100)
  -k IDLE      idle sandboxes for the memory measurement (default 50)
  -j PARALLEL  creations in flight for the parallel batch (default 2 x cores)
  -i IMAGE     image for every sandbox (default: the daemon's, "host")
  -t TAR       import this rootfs tar as image "bench" and use it, e.g. the
               output of deploy/images/build-busybox.sh
  -r RUNTIME   runtime (default: the daemon's, "linux")
  -P           reuse the peer results of the last peers.sh run instead of
               measuring them again (faster; ratios are then across runs)
Environment: BENCH_CACHE (default <repo>/build-bench) holds the compiled
helpers and results (\$BENCH_CACHE/results.txt); CORRAL_BENCH_API names
the corral_bench_api binary (default BUILD_DIR/bin/corral_bench_api).
Must run as root.
USAGE
  exit 2
}

runs=${BENCH_RUNS:-200}
creates=100
idle=50
parallel=$(($(nproc) * 2))
image=
runtime=
reuse_peers=0
image_tar=
while getopts "n:c:k:j:i:t:r:Ph" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    c) creates=$OPTARG ;;
    k) idle=$OPTARG ;;
    j) parallel=$OPTARG ;;
    i) image=$OPTARG ;;
    t) image_tar=$(readlink -f "$OPTARG") ;;
    r) runtime=$OPTARG ;;
    P) reuse_peers=1 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
for v in "$runs" "$creates" "$idle" "$parallel"; do
  case $v in '' | *[!0-9]* | 0) usage ;; esac
done
build=$(readlink -f "${1:-${CORRAL_BUILD:-$repo_root/build}}")

bench_build_c timeit
results=$bench_cache/results.txt
peers=$bench_cache/peers.txt
mkdir -p "$bench_cache"
: >"$results.tmp"

# Human line for a machine line: LABEL RUNS FAILED MIN MEDIAN P90 MAX ...
show() {
  # shellcheck disable=SC2086  # the machine line is split on purpose
  set -- $1
  printf '%-22s n=%-4s min %7.2f  median %7.2f  p90 %7.2f  max %7.2f ms' \
    "$1" "$2" "$4" "$5" "$6" "$7"
  [ "$3" = 0 ] || printf '  [%s FAILED]' "$3"
  printf '\n'
}

# --- peers -------------------------------------------------------------------
if [ "$reuse_peers" -eq 1 ] && [ -s "$peers" ]; then
  echo "== peers (reused from $peers)"
  while IFS= read -r line; do show "$line"; done <"$peers"
else
  echo "== peers"
  "$bench_dir/peers.sh" -n "$runs" -o "$peers"
fi
cat "$peers" >>"$results.tmp"
peer_median() { bench_field "$peers" "$1" 5; }

# --- the daemon ----------------------------------------------------------------
corrald=$build/bin/corrald
corral=$build/bin/corral
missing=
[ -x "$corrald" ] || missing="$missing $corrald"
[ -x "$corral" ] || missing="$missing $corral"
if [ -n "$missing" ]; then
  echo
  echo "== corral: not measured: missing$missing"
  echo "   build them first (cmake --build $build --target corrald corral corral-agent)"
  echo "   or name another build directory: ${0##*/} BUILD_DIR"
  mv -f "$results.tmp" "$results"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  bench_die "corrald must run as root; peers were measured above"
fi

# The daemon's socket and state live under the cache dir, not in /tmp, where
# other tests' clean-ups might remove them mid-run.
work=$(mktemp -d "$bench_cache/run.XXXXXX")
socket=$work/corrald.sock
state=$work/state
ids=$work/ids
: >"$ids"
daemon_pid=

# Every CLI call gets a time limit: a daemon that stops answering must fail
# the benchmark, not hang it.
call_timeout=60
cli() { timeout "$call_timeout" "$corral" --socket "$socket" "$@"; }

# Every sandbox this run created and has not removed (one id a line).
forget_ids() {
  # Removes the ids listed in file $1 from $ids.
  if [ -s "$1" ]; then
    grep -vxF -f "$1" "$ids" >"$ids.new" || true
    mv -f "$ids.new" "$ids"
  fi
}

# Sum of the PSS of the given pids, in KiB (pids that are gone count 0).
pss_kib() {
  local pid files=()
  for pid in "$@"; do
    [ -r "/proc/$pid/smaps_rollup" ] && files+=("/proc/$pid/smaps_rollup")
  done
  if [ ${#files[@]} -eq 0 ]; then
    echo 0
    return
  fi
  # One awk for all; a process that exits meanwhile is skipped, not fatal.
  awk '/^Pss:/ { total += $2; nextfile } END { print total + 0 }' "${files[@]}" 2>/dev/null || echo 0
}

# Host memory in use (MemTotal - MemAvailable), in KiB.
used_kib() {
  awk '/^MemTotal:/ { t = $2 } /^MemAvailable:/ { a = $2 } END { print t - a }' /proc/meminfo
}

cleanup() {
  local status=$?
  set +e
  bench_stop_daemon
  if [ -n "${bwrap_pids:-}" ]; then
    # shellcheck disable=SC2086
    kill -KILL $bwrap_pids 2>/dev/null
  fi
  bench_keep_log "$status"
  rm -rf --one-file-system "$work"
  rm -f "$results.tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo
echo "== corral ($build)"
bench_start_daemon

if [ -n "$image_tar" ]; then
  [ -f "$image_tar" ] || bench_die "no such image tar: $image_tar"
  echo "importing $image_tar as image \"bench\""
  cli image import bench "$image_tar" >/dev/null || bench_die "corral image import bench $image_tar failed"
  image=bench
fi
sandbox_opts=()
[ -n "$image" ] && sandbox_opts+=(--image "$image")
[ -n "$runtime" ] && sandbox_opts+=(--runtime "$runtime")

# Stops the benchmark, with the daemon's last words, if corrald has died.
check_daemon() {
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    wait "$daemon_pid" 2>/dev/null
    local status=$?
    daemon_pid=
    echo "corrald died during $1 (wait status $status); nothing further is measured" >&2
    exit 1
  fi
  if [ ! -S "$socket" ]; then
    echo "corrald's socket $socket vanished during $1 (did something remove it?)" >&2
    exit 1
  fi
}

# Runs timeit, prints its human line, appends its machine line to the
# results; returns timeit's status. Usage: measure LABEL TIMEIT-ARGS...
measure() {
  local label=$1 line status=0
  shift
  line=$("$timeit" -m -t "$call_timeout" -l "$label" "$@") || status=$?
  if [ -n "$line" ]; then
    printf '%s\n' "$line" >>"$results.tmp"
    show "$line"
  fi
  check_daemon "$label"
  return "$status"
}

# Checks a command once and explains a failure; usage: probe WHAT CMD...
probe() {
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    echo "$what: not measured: \`$*\` failed:" >&2
    printf '  %s\n' "$out" | tail -n 5 >&2
    return 1
  fi
}

# TTFC through the CLI.
if probe "TTFC" cli run "${sandbox_opts[@]}" -- true; then
  measure corral-run -n "$runs" -w 3 -- "$corral" --socket "$socket" run "${sandbox_opts[@]}" -- true || true
fi

# What the disk limit costs a create: every workspace is an ext4 image of
# the sandbox's disk size (mkfs, a loop device, a mount in the sandbox).
# TTFC with the smallest disk and a 16 GiB one beside the default (1 GiB),
# and formatting a 1 GiB image alone, as the runtimes do.
if probe "TTFC --disk 16" cli run "${sandbox_opts[@]}" --disk 16 -- true; then
  measure corral-run-disk16m -n "$runs" -w 3 -- "$corral" --socket "$socket" run "${sandbox_opts[@]}" --disk 16 -- true || true
  measure corral-run-disk16g -n "$runs" -w 3 -- "$corral" --socket "$socket" run "${sandbox_opts[@]}" --disk 16384 -- true || true
fi
if mkfs_ext4=$(command -v mkfs.ext4 || ls /usr/sbin/mkfs.ext4 2>/dev/null); then
  measure mkfs-1g -n 50 -w 2 -- sh -c "rm -f '$work/disk.img' && truncate -s 1G '$work/disk.img' && '$mkfs_ext4' -q -F -O ^has_journal -m 0 -E lazy_itable_init=1,nodiscard '$work/disk.img'" || true
  rm -f "$work/disk.img"
fi

# A CLI round trip that touches no sandbox (client start, connect, one
# unary RPC): the floor under every CLI number.
measure corral-version -n "$runs" -w 3 -- "$corral" --socket "$socket" version || true

# Exec round trip in one running sandbox.
if id=$(cli create "${sandbox_opts[@]}" 2>"$work/create.err") && [ -n "$id" ]; then
  echo "$id" >>"$ids"
  if probe "exec" cli exec "$id" -- true; then
    measure corral-exec -n "$runs" -w 3 -- "$corral" --socket "$socket" exec "$id" -- true || true
  fi
  cli rm "$id" >/dev/null 2>&1 && echo "$id" >"$work/gone" && forget_ids "$work/gone"
else
  echo "exec: not measured: corral create failed: $(head -c 300 "$work/create.err")" >&2
fi

# Creations per second: a batch of creates, then a batch of rms, one at a
# time and then with several in flight.
create_batch() {
  local label=$1 jobs=$2 out=$work/created.$1
  : >"$out"
  measure "corral-create$label" -n "$creates" -w 0 -j "$jobs" -o "$out" -- \
    "$corral" --socket "$socket" create "${sandbox_opts[@]}" || true
  cat "$out" >>"$ids"
  if [ -s "$out" ]; then
    measure "corral-rm$label" -I "$out" -j "$jobs" -- "$corral" --socket "$socket" rm '{}' || true
    forget_ids "$out"
  fi
}
create_batch "" 1
create_batch "-par" "$parallel"

# Memory per idle sandbox, beside as many idle bubblewrap sandboxes.
settle() { sync; sleep 1; }
measure_idle_memory() {
  local before_used before_pss after_used after_pss n=0
  settle
  before_used=$(used_kib)
  # shellcheck disable=SC2046
  before_pss=$(pss_kib $(descendants "$daemon_pid") "$daemon_pid")
  : >"$work/idle"
  for _ in $(seq "$idle"); do
    cli create "${sandbox_opts[@]}" >>"$work/idle" 2>>"$work/create.err" || break
    n=$((n + 1))
  done
  cat "$work/idle" >>"$ids"
  check_daemon "idle sandbox creation"
  settle
  after_used=$(used_kib)
  # shellcheck disable=SC2046
  after_pss=$(pss_kib $(descendants "$daemon_pid") "$daemon_pid")
  local procs
  procs=$(descendants "$daemon_pid" | wc -l)
  echo "corral: $n idle sandboxes, $procs processes under corrald"
  if [ "$n" -gt 0 ]; then
    corral_used_per=$(((after_used - before_used) / n))
    corral_pss_per=$(((after_pss - before_pss) / n))
    printf '%-22s PSS (corrald + sandboxes) %6d KiB/sandbox   host used %6d KiB/sandbox (whole host: noisy)\n' \
      corral-idle "$corral_pss_per" "$corral_used_per"
    echo "corral-idle $n 0 $corral_used_per $corral_pss_per" >>"$results.tmp"
  fi
  while IFS= read -r id; do cli rm "$id" >/dev/null 2>&1 || true; done <"$work/idle"
  forget_ids "$work/idle"
}

bwrap_idle_memory() {
  command -v bwrap >/dev/null || return 0
  local before_used before_pss after_used after_pss pid all=
  local args=(--unshare-all --die-with-parent --ro-bind /usr /usr
    --symlink usr/bin /bin --symlink usr/lib /lib)
  [ -e /usr/lib64 ] && args+=(--symlink usr/lib64 /lib64)
  args+=(--proc /proc --dev /dev)
  settle
  before_used=$(used_kib)
  bwrap_pids=
  for _ in $(seq "$idle"); do
    bwrap "${args[@]}" sleep 3600 </dev/null >/dev/null 2>&1 &
    bwrap_pids="$bwrap_pids $!"
  done
  settle
  after_used=$(used_kib)
  for pid in $bwrap_pids; do all="$all $pid $(descendants "$pid" | tr '\n' ' ')"; done
  before_pss=0
  # shellcheck disable=SC2086
  after_pss=$(pss_kib $all)
  bwrap_used_per=$(((after_used - before_used) / idle))
  bwrap_pss_per=$(((after_pss - before_pss) / idle))
  printf '%-22s PSS (bwrap + sleep)         %6d KiB/sandbox   host used %6d KiB/sandbox (whole host: noisy)\n' \
    bwrap-idle "$bwrap_pss_per" "$bwrap_used_per"
  echo "bwrap-idle $idle 0 $bwrap_used_per $bwrap_pss_per" >>"$results.tmp"
  # shellcheck disable=SC2086
  kill -KILL $bwrap_pids 2>/dev/null || true
  # shellcheck disable=SC2086
  wait $bwrap_pids 2>/dev/null || true
  bwrap_pids=
}
corral_used_per='' corral_pss_per='' bwrap_used_per='' bwrap_pss_per=''
measure_idle_memory
bwrap_idle_memory

# API-level numbers, when the bench target was built.
api=${CORRAL_BENCH_API:-$build/bin/corral_bench_api}
if [ -x "$api" ]; then
  api_args=(--socket "$socket" -n "$runs" -c "$creates")
  [ -n "$image" ] && api_args+=(--image "$image")
  [ -n "$runtime" ] && api_args+=(--runtime "$runtime")
  if timeout 900 "$api" "${api_args[@]}" >"$work/api.txt" 2>"$work/api.err"; then
    while IFS= read -r line; do
      printf '%s\n' "$line" >>"$results.tmp"
      show "$line"
    done <"$work/api.txt"
  else
    echo "api: corral_bench_api failed: $(tail -n 3 "$work/api.err")" >&2
  fi
else
  echo "api: not measured: $api not built (target corral_bench_api)"
fi

# --- ratios --------------------------------------------------------------------
# Field N of a measurement, empty when it is missing or had failed runs
# (numbers from a run that stopped half-way would mislead).
field() {
  local failed
  failed=$(bench_field "$results.tmp" "$1" 3)
  if [ -n "$failed" ] && [ "$failed" != 0 ]; then
    return 0
  fi
  bench_field "$results.tmp" "$1" "$2"
}
echo
echo "== summary (medians; peers measured in this run unless -P; measurements"
echo "   with failed runs are left out)"
bwrap_median=$(peer_median bwrap)
unshare_median=$(peer_median unshare)
fork_median=$(peer_median fork-exec)
rawns_median=$(peer_median rawns)
for label in corral-run api-run; do
  m=$(field "$label" 5)
  [ -n "$m" ] || continue
  printf 'TTFC %-10s %7.2f ms = %sx bwrap (target <= 2x), %sx unshare, %sx rawns, %sx fork-exec\n' \
    "$label" "$m" "$(bench_ratio "$m" "$bwrap_median")" "$(bench_ratio "$m" "$unshare_median")" \
    "$(bench_ratio "$m" "$rawns_median")" "$(bench_ratio "$m" "$fork_median")"
done
run_median=$(field corral-run 5)
mkfs_median=$(field mkfs-1g 5)
if [ -n "$run_median" ] && [ -n "$mkfs_median" ]; then
  printf 'workspace disk   mkfs of 1 GiB %.2f ms = %s%% of TTFC; TTFC with a 16 MiB disk %s ms, a 16 GiB one %s ms\n' \
    "$mkfs_median" "$(awk -v a="$mkfs_median" -v b="$run_median" 'BEGIN { printf "%.0f", 100 * a / b }')" \
    "$(field corral-run-disk16m 5)" "$(field corral-run-disk16g 5)"
fi
exec_median=$(field corral-exec 5)
floor_median=$(field corral-version 5)
if [ -n "$exec_median" ]; then
  printf 'exec via CLI     %7.2f ms median; a CLI round trip with no sandbox (version) %.2f ms, so exec adds %.2f ms\n' \
    "$exec_median" "${floor_median:-0}" "$(awk -v a="$exec_median" -v b="${floor_median:-0}" 'BEGIN { print a - b }')"
fi
api_exec=$(field api-exec 5)
[ -z "$api_exec" ] || printf 'exec via API     %7.3f ms median (target < 1 ms)\n' "$api_exec"
for label in corral-create corral-create-par api-create; do
  rate=$(field "$label" 9)
  [ -n "$rate" ] || continue
  rm_label=${label/create/rm}
  rm_rate=$(field "$rm_label" 9)
  # create+rm cycles per second: sandboxes / (create wall + rm wall)
  cycles=$(awk -v n="$(field "$label" 2)" -v a="$(field "$label" 8)" -v b="$(field "$rm_label" 8)" \
    'BEGIN { if (a + b > 0) printf "%.0f", n / (a + b); else print "n/a" }')
  printf 'creations/s %-18s %6.0f/s (target >= 200/s); removals %s/s; create+rm cycles %s/s\n' \
    "$label" "$rate" "${rm_rate:-n/a}" "$cycles"
done
if [ -n "$corral_pss_per" ] && [ -n "$bwrap_pss_per" ]; then
  printf 'idle memory/sandbox: PSS %d KiB = %sx bwrap; host used %d KiB = %sx bwrap (noisy)\n' \
    "$corral_pss_per" "$(bench_ratio "$corral_pss_per" "$bwrap_pss_per")" \
    "$corral_used_per" "$(bench_ratio "$corral_used_per" "$bwrap_used_per")"
fi
mv -f "$results.tmp" "$results"
echo "results: $results"
