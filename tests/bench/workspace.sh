#!/usr/bin/env bash
# Workspace benchmark. Starts corrald from a build directory on a temporary
# socket and state directory and measures, through the real CLI:
#   - sync throughput (`corral sync`) beside tar piped into the sandbox
#     through the same transport (`tar -c | corral exec -i ... tar -x`) and
#     beside a plain copy on the same disk (`cp -a`)
#   - export throughput (`corral export`) beside `corral exec ... tar -c |
#     tar -x` and `cp -a`
#   - diff time of a seeded workspace of FILES files with three changed
#     (`corral diff`) beside `diff -r` of two host trees with the same change
# and prints the ratios. Never asserts on time.
set -euo pipefail
# shellcheck source=tests/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} [-s MIB] [-f FILES] [-r REPEAT] [BUILD_DIR]
  BUILD_DIR  where bin/corrald and bin/corral are (default <repo>/build)
  -s MIB     payload for sync/export: one file of MIB-64 MiB plus 1024 files
             of 64 KiB (default 192; at most 250, since the tar peer's output
             goes through exec's output limit, 256 MiB at the most)
  -f FILES   files in the diff workspace (default 10000)
  -r REPEAT  timed diffs, the median is shown (default 5)
Results: \$BENCH_CACHE/workspace.txt (default <repo>/build-bench). Must run
as root.
USAGE
  exit 2
}

size_mib=192
files=10000
repeat=5
while getopts "s:f:r:h" opt; do
  case $opt in
    s) size_mib=$OPTARG ;;
    f) files=$OPTARG ;;
    r) repeat=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -le 1 ] || usage
for v in "$size_mib" "$files" "$repeat"; do
  case $v in '' | *[!0-9]* | 0) usage ;; esac
done
[ "$size_mib" -gt 64 ] && [ "$size_mib" -le 250 ] || bench_die "-s must be more than 64 and at most 250"
bench_setup_daemon_run workspace "${1:-}"
# Median of the numbers on stdin.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "== payload: $size_mib MiB ($((size_mib - 64)) MiB file + 1024 x 64 KiB)"
data=$work/data
mkdir -p "$data/small"
head -c $(((size_mib - 64) << 20)) /dev/urandom >"$data/big.bin"
head -c $((64 << 20)) /dev/urandom | split -b 64k -a 4 - "$data/small/f"
sync

bench_start_daemon
id=$(cli create --ttl 3600)
echo "$id" >>"$ids"

# --- sync ---------------------------------------------------------------------
t=$(now_ns)
cli sync "$id" "$data" /workspace/corral >/dev/null
sync_ms=$(since_ms "$t")
t=$(now_ns)
tar -C "$data" -cf - . |
  cli exec -i "$id" -- sh -c 'mkdir -p /workspace/peer && tar -C /workspace/peer -xf -'
tar_in_ms=$(since_ms "$t")
t=$(now_ns)
cp -a "$data" "$work/copy"
cp_ms=$(since_ms "$t")
[ "$(cli exec "$id" -- sh -c 'cmp /workspace/corral/big.bin /workspace/peer/big.bin && echo same')" = same ] ||
  bench_die "sync and tar gave different content"

# --- export -------------------------------------------------------------------
t=$(now_ns)
cli export "$id" /workspace/corral "$work/out-corral" >/dev/null
export_ms=$(since_ms "$t")
mkdir -p "$work/out-tar"
t=$(now_ns)
cli exec --output-limit 268435456 "$id" -- tar -C /workspace -cf - corral |
  tar -C "$work/out-tar" -xf -
tar_out_ms=$(since_ms "$t")
t=$(now_ns)
cp -a "$work/copy" "$work/copy2"
cp2_ms=$(since_ms "$t")
cmp -s "$data/big.bin" "$work/out-corral/corral/big.bin" ||
  bench_die "export gave different content"
cli rm "$id" >/dev/null
: >"$ids"
rm -rf "$work/copy" "$work/copy2" "$work/out-corral" "$work/out-tar"

# --- diff ---------------------------------------------------------------------
echo "== diff: $files files, 3 changed"
tree=$work/tree
mkdir -p "$tree"
seq 1 $((files * 5)) | split -l 5 -a 6 - "$tree/f"
id=$(cli create --ttl 3600 --seed "$tree")
echo "$id" >>"$ids"
# sed reads all of its input: no SIGPIPE for the writer under pipefail.
first=$(cd "$tree" && ls | sed -n 1,3p | tr '\n' ' ')
# shellcheck disable=SC2086
cli exec "$id" -- sh -c "cd /workspace && for f in $first; do echo changed >> \$f; done"
cp -a "$tree" "$work/tree2"
for f in $first; do echo changed >>"$work/tree2/$f"; done
changed=$(cli diff "$id" --name-status | wc -l)
[ "$changed" -eq 3 ] || bench_die "corral diff reported $changed changes, expected 3"
diff_ms=$(for _ in $(seq "$repeat"); do
  t=$(now_ns)
  cli diff "$id" >/dev/null
  since_ms "$t"
done | median)
peer_diff_ms=$(for _ in $(seq "$repeat"); do
  t=$(now_ns)
  diff -r "$tree" "$work/tree2" >/dev/null || true
  since_ms "$t"
done | median)

echo
printf '%-34s %8s %10s\n' "measure" "ms" "MiB/s"
printf '%-34s %8d %10s\n' "sync (corral sync)" "$sync_ms" "$(rate "$size_mib" "$sync_ms")"
printf '%-34s %8d %10s\n' "  tar | corral exec -i tar -x" "$tar_in_ms" "$(rate "$size_mib" "$tar_in_ms")"
printf '%-34s %8d %10s\n' "  cp -a on the same disk" "$cp_ms" "$(rate "$size_mib" "$cp_ms")"
printf '%-34s %8d %10s\n' "export (corral export)" "$export_ms" "$(rate "$size_mib" "$export_ms")"
printf '%-34s %8d %10s\n' "  corral exec tar -c | tar -x" "$tar_out_ms" "$(rate "$size_mib" "$tar_out_ms")"
printf '%-34s %8d %10s\n' "  cp -a on the same disk" "$cp2_ms" "$(rate "$size_mib" "$cp2_ms")"
printf '%-34s %8d\n' "diff, $files files (median)" "$diff_ms"
printf '%-34s %8d\n' "  diff -r of two host trees" "$peer_diff_ms"
echo
echo "sync time:   $(bench_ratio "$sync_ms" "$tar_in_ms")x tar through exec, $(bench_ratio "$sync_ms" "$cp_ms")x cp -a"
echo "export time: $(bench_ratio "$export_ms" "$tar_out_ms")x tar through exec, $(bench_ratio "$export_ms" "$cp2_ms")x cp -a"
echo "diff time:   $(bench_ratio "$diff_ms" "$peer_diff_ms")x diff -r"
{
  echo "sync_ms $sync_ms tar_in_ms $tar_in_ms cp_ms $cp_ms size_mib $size_mib"
  echo "export_ms $export_ms tar_out_ms $tar_out_ms cp_ms $cp2_ms"
  echo "diff_ms $diff_ms diff_r_ms $peer_diff_ms files $files"
} >"$results"
