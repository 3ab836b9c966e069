#!/usr/bin/env bash
# Boot and time to first command on the qemu runtime, beside a bare QEMU boot
# of the same kernel with a trivial initramfs (tests/bench/bareinit.c: an
# init that prints a line and powers off), on the same machine settings
# (microvm, the same accelerator, RAM, CPU model, TCG cache and kernel
# command line), in the same script:
#   qemu-bare-boot  QEMU start to the bare init's line on the console
#   qemu-create     `corral create --runtime qemu`: to the agent's hello
#   qemu-ttfc       `corral run --runtime qemu -- true`: create, exec, destroy
#   qemu-exec       `corral exec ID -- true` in a running VM
#   qemu-fork       `corral fork ID@SNAP` of a memory snapshot: a ready clone
# and prints the ratios. The target (issue 6): boot to agent ready within
# 20% of the bare boot on software emulation. Never asserts on time.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-n RUNS] [-m MIB] [BUILD_DIR]
  BUILD_DIR  where bin/corrald, bin/corral and vm-kernel/ are (default
             <repo>/build; tests/run.sh builds vm-kernel there)
  -n RUNS    timed runs per measurement (default \$BENCH_RUNS or 10)
  -m MIB     the sandboxes' memory limit (default 256)
Must run as root. Results: \$BENCH_CACHE/qemu.txt (machine lines).
USAGE
  exit 2
}

runs=${BENCH_RUNS:-10}
memory=256
while getopts "n:m:h" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    m) memory=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
case $runs in '' | *[!0-9]* | 0) usage ;; esac

bench_setup_daemon_run qemu "${1:-}"
bench_build_c timeit
bench_build_c bareinit -static
: >"$results"
kernel_dir=$build/vm-kernel
[ -f "$kernel_dir/vmlinux" ] || bench_die "no $kernel_dir/vmlinux: run deploy/images/build-vm-kernel.sh $kernel_dir"
tar=$build/images/busybox.tar
bash "$repo_root/deploy/images/build-busybox.sh" "$tar" >/dev/null

printf '[runtimes.qemu]\nkernel_dir = "%s"\n' "$kernel_dir" >"$work/corrald.toml"
bench_start_daemon --config "$work/corrald.toml"
cli image import busybox "$tar" >/dev/null
cli runtimes | awk '$1 == "qemu" && $2 == "yes" { f = 1 } END { exit !f }' ||
  bench_die "the qemu runtime is unavailable: $(cli runtimes | awk '$1 == "qemu"')"

# Writes one machine line (label runs failed min median p90 max) from a
# file of milliseconds, one a line, and prints it like measure does.
record() {
  local label=$1 file=$2
  local line
  line=$(sort -n "$file" | awk -v l="$label" '
    { v[NR] = $1 }
    END {
      if (NR == 0) exit 1
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      p = v[int(NR * 0.9 + 0.999)]
      printf "%s %d 0 %.3f %.3f %.3f %.3f\n", l, NR, v[1], m, p, v[NR]
    }')
  printf '%s\n' "$line" >>"$results"
  # shellcheck disable=SC2086
  set -- $line
  printf '  %-16s median %8.1f ms  (min %.1f, p90 %.1f, n=%s)\n' "$1" "$5" "$4" "$6" "$2"
}

measure() {
  local label=$1
  shift
  local line
  line=$("$timeit" -m -w 1 -n "$runs" -t 120 -l "$label" -- "$@") ||
    bench_die "$label failed (command: $*)"
  printf '%s\n' "$line" >>"$results"
  # shellcheck disable=SC2086
  set -- $line
  printf '  %-16s median %8.1f ms  (min %.1f, p90 %.1f, n=%s)\n' "$1" "$5" "$4" "$6" "$2"
}

# --- the sandbox's machine, as the plugin plans it
id=$(cli create --runtime qemu --image busybox --memory "$memory")
echo "$id" >>"$ids"
machine=$state/runtime/qemu/$id/machine
value() { awk -F= -v k="$1" '$1 == k { print $2 }' "$machine"; }
accel=$(value accel)
ram_mib=$(($(value ram_bytes) / 1048576))
tsc=$(value tsc_khz)
echo "qemu bench: $runs runs each, $(nproc) cores, accel $accel, RAM ${ram_mib} MiB, kernel $(cat "$kernel_dir/release")"

# --- the bare boot: the same kernel and machine, a trivial initramfs
python3 - "$work/bare.cpio" "$bench_cache/bareinit" <<'PY'
import os, sys
out, init = sys.argv[1], sys.argv[2]
data, inode = b"", 1
def entry(name, mode, payload=b"", rdev=(0, 0)):
    global data, inode
    inode += 1
    fields = [inode, mode, 0, 0, 1, 0, len(payload), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    data += b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    data += b"\0" * (-len(data) % 4) + payload
    data += b"\0" * (-len(data) % 4)
entry("dev", 0o040755)
entry("dev/console", 0o020600, rdev=(5, 1))
entry("init", 0o100755, open(init, "rb").read())
entry("TRAILER!!!", 0)
open(out, "wb").write(data)
PY
append="console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init cryptomgr.notests init_on_alloc=0"
accel_args=(-accel kvm -cpu host)
if [ "$accel" = tcg ]; then
  accel_args=(-accel "tcg,tb-size=64" -cpu max)
  [ "$tsc" = 0 ] || append="$append tsc_early_khz=$tsc lpj=$((tsc * 4)) tsc=reliable"
fi
bare=(qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot
  -machine microvm "${accel_args[@]}" -smp 1 -m "${ram_mib}M"
  -global virtio-mmio.force-legacy=false
  -kernel "$kernel_dir/vmlinux" -initrd "$work/bare.cpio" -append "$append"
  -serial stdio)
python3 - "$runs" "$work/bare.ms" "${bare[@]}" <<'PY'
import subprocess, sys, time
runs, out, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
times = []
for i in range(runs + 1):
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in p.stdout:
        if b"corral-bare-ready" in line:
            break
    else:
        sys.exit("the bare init never said it was ready")
    elapsed = (time.monotonic() - start) * 1000
    p.kill()
    p.wait()
    if i > 0:  # the first run warms the page cache
        times.append(elapsed)
open(out, "w").write("".join("%.3f\n" % t for t in times))
PY
echo "bare QEMU:"
record qemu-bare-boot "$work/bare.ms"

# --- Corral: boot to the agent, time to first command, exec, clone
echo "corral:"
: >"$work/create.ms"
for _ in $(seq "$runs"); do
  start=$(now_ns)
  one=$(cli create --runtime qemu --image busybox --memory "$memory")
  echo "$((($(now_ns) - start) / 1000)) 1000" | awk '{ printf "%.3f\n", $1 / $2 }' >>"$work/create.ms"
  cli rm "$one" >/dev/null
done
record qemu-create "$work/create.ms"
measure qemu-ttfc "$corral" --socket "$socket" run --runtime qemu --image busybox \
  --memory "$memory" -- true
measure qemu-exec "$corral" --socket "$socket" exec "$id" -- true
cli snapshot create --memory "$id" warm >/dev/null
: >"$work/fork.ms"
for _ in $(seq "$runs"); do
  start=$(now_ns)
  one=$(cli fork "$id@warm")
  echo "$((($(now_ns) - start) / 1000)) 1000" | awk '{ printf "%.3f\n", $1 / $2 }' >>"$work/fork.ms"
  cli rm "$one" >/dev/null
done
record qemu-fork "$work/fork.ms"

echo
echo "ratios (corral / bare QEMU boot of the same kernel; target for create < 1.20):"
for label in qemu-create qemu-ttfc qemu-fork; do
  printf '  %-12s %8.1f / %8.1f ms = %sx\n' "$label" \
    "$(bench_field "$results" "$label" 5)" "$(bench_field "$results" qemu-bare-boot 5)" \
    "$(bench_ratio "$(bench_field "$results" "$label" 5)" "$(bench_field "$results" qemu-bare-boot 5)")"
done
