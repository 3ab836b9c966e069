#!/usr/bin/env bash
# Builds what the qemu and firecracker runtimes boot every VM sandbox with,
# from Debian's cloud kernel package (linux-image-cloud-amd64), without
# installing it on this host:
#   OUT/vmlinux     the uncompressed kernel (QEMU boots it directly through
#                   its PVH entry, faster than the compressed bzImage)
#   OUT/modules/    the modules the VM's init loads, in dependency order
#                   (00-virtio_ring.ko, ...): virtio-mmio, virtio-blk,
#                   virtio-console (the agent's port), fuse and virtiofs (the
#                   host image), virtio-net, and vsock with its virtio
#                   transport (Firecracker's agent connection)
#   OUT/release     the kernel release ("6.1.0-57-cloud-amd64")
#   OUT/package     the package and version it came from, and the layout
#                   of this script's output (format=4: modules without
#                   their signatures, vsock among them)
# The initramfs (the agent as /init plus these modules) is made by the
# plugin itself, so a rebuilt agent needs no new run of this script.
#
# Cached: when OUT/package names the package version apt offers now, nothing
# is done. Needs apt-get (network to Debian's archive), dpkg-deb, python3,
# objcopy and the kernel's decompressor (lz4 for Debian's kernels).
set -euo pipefail

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} OUT_DIR

Environment: KERNEL_PACKAGE=linux-image-... to pick another kernel package
(default: what linux-image-cloud-amd64 depends on).
USAGE
  exit 2
}

[ $# -eq 1 ] || usage
case "$1" in -h | --help) usage ;; esac
out=$1
name=${0##*/}

package=${KERNEL_PACKAGE:-}
if [ -z "$package" ]; then
  package=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '/Depends: linux-image-/ { print $2; exit }')
fi
if [ -z "$package" ]; then
  # No package lists yet on a fresh machine.
  apt-get update -qq
  package=$(apt-cache depends linux-image-cloud-amd64 |
    awk '/Depends: linux-image-/ { print $2; exit }')
fi
[ -n "$package" ] || { echo "$name: no linux-image-cloud-amd64 in apt's lists" >&2; exit 1; }
version=$(apt-cache policy "$package" | awk '/Candidate:/ { print $2; exit }')
wanted="$package=$version"
# What OUT/package holds: a change of this script's output changes it too.
stamp="$wanted format=4"

if [ -f "$out/package" ] && [ "$(cat "$out/package")" = "$stamp" ] &&
  [ -f "$out/vmlinux" ] && [ -d "$out/modules" ]; then
  echo "$name: $out is up to date ($stamp)"
  exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/corral-vm-kernel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(
  cd "$tmp"
  # apt-get download runs its fetch as _apt where it can; the directory must
  # be reachable for it.
  chmod 0755 "$tmp"
  apt-get download -qq "$wanted" 2>/dev/null ||
    { apt-get update -qq && apt-get download -qq "$wanted"; }
)
deb=$(ls "$tmp"/*.deb)
dpkg-deb -x "$deb" "$tmp/x"
release=$(ls "$tmp/x/lib/modules")
vmlinuz="$tmp/x/boot/vmlinuz-$release"
config="$tmp/x/boot/config-$release"

stage="$tmp/out"
mkdir -p "$stage/modules"

# The bzImage's payload: its offset and length are in the setup header
# (Documentation/x86/boot.rst); the compression is the kernel config's.
python3 - "$vmlinuz" "$tmp/payload" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
if data[0x202:0x206] != b"HdrS":
    sys.exit("not a bzImage: no setup header")
setup_sects = data[0x1F1] or 4
payload_offset, payload_length = struct.unpack_from("<II", data, 0x248)
start = (setup_sects + 1) * 512 + payload_offset
open(sys.argv[2], "wb").write(data[start:start + payload_length])
PY
if grep -q '^CONFIG_KERNEL_LZ4=y' "$config"; then
  # The kernel's build appends the uncompressed size after the legacy LZ4
  # frames, which lz4 reports as a bad header after it has written
  # everything; the ELF check below tells a real failure.
  lz4 -dc "$tmp/payload" >"$stage/vmlinux" 2>/dev/null || true
elif grep -q '^CONFIG_KERNEL_ZSTD=y' "$config"; then
  zstd -dcq "$tmp/payload" >"$stage/vmlinux"
elif grep -q '^CONFIG_KERNEL_XZ=y' "$config"; then
  xz -dc "$tmp/payload" >"$stage/vmlinux"
elif grep -q '^CONFIG_KERNEL_GZIP=y' "$config"; then
  gzip -dc "$tmp/payload" >"$stage/vmlinux"
else
  echo "$name: unknown kernel compression in $config" >&2
  exit 1
fi
head -c 4 "$stage/vmlinux" | grep -q 'ELF' ||
  { echo "$name: the decompressed kernel is not an ELF file" >&2; exit 1; }

# The modules the VM needs and what they depend on ("depends=" in each
# module's .modinfo), dependencies first. Their signatures are cut off when
# the kernel does not insist on them (no CONFIG_MODULE_SIG_FORCE; a kernel
# booted directly, without UEFI Secure Boot, is not locked down): checking
# them cost about 40 ms of each boot under emulation, and proved nothing
# the host does not already trust, as the kernel beside them is not
# checked either. The guest's kernel then notes the unsigned modules in
# its taint flags.
moddir="$tmp/x/lib/modules/$release/kernel"
strip=1
if grep -q '^CONFIG_MODULE_SIG_FORCE=y' "$config"; then strip=0; fi
python3 - "$moddir" "$stage/modules" "$strip" virtio_mmio virtio_blk virtio_console virtiofs virtio_net vmw_vsock_virtio_transport <<'PY'
import os, struct, subprocess, sys
moddir, dest, strip, wanted = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
MAGIC = b"~Module signature appended~\n"
def unsigned(data):
    # module data, signature, struct module_signature (12 bytes: algo, hash,
    # id_type, signer_len, key_id_len, 3 pad, be32 sig_len), MAGIC
    if not data.endswith(MAGIC):
        return data
    info = data[-len(MAGIC) - 12:-len(MAGIC)]
    signer_len, key_id_len = info[3], info[4]
    (sig_len,) = struct.unpack(">I", info[8:12])
    end = len(data) - len(MAGIC) - 12 - sig_len - signer_len - key_id_len
    if end <= 0:
        sys.exit("a module's signature trailer is malformed")
    return data[:end]
paths = {}
for root, _, files in os.walk(moddir):
    for f in files:
        if f.endswith(".ko"):
            paths[f[:-3].replace("-", "_")] = os.path.join(root, f)
def depends(name):
    info = subprocess.run(["objcopy", "-O", "binary", "--only-section=.modinfo",
                           paths[name], "/dev/stdout"], check=True,
                          capture_output=True).stdout
    for field in info.split(b"\0"):
        if field.startswith(b"depends="):
            return [d.replace("-", "_") for d in field[8:].decode().split(",") if d]
    return []
order, seen = [], set()
def visit(name):
    if name in seen:
        return
    if name not in paths:
        sys.exit("module %s is not in the package" % name)
    seen.add(name)
    for dependency in depends(name):
        visit(dependency)
    order.append(name)
for name in wanted:
    visit(name)
for i, name in enumerate(order):
    data = open(paths[name], "rb").read()
    if strip:
        data = unsigned(data)
    open(os.path.join(dest, "%02d-%s.ko" % (i, name)), "wb").write(data)
print(" ".join(order))
PY

printf '%s\n' "$release" >"$stage/release"
printf '%s\n' "$stamp" >"$stage/package"
chmod -R go+rX "$stage"
mkdir -p "$(dirname "$out")"
rm -rf "$out.old"
[ ! -e "$out" ] || mv "$out" "$out.old"
mv "$stage" "$out"
rm -rf "$out.old"
echo "$name: wrote $out ($release, vmlinux $(du -h "$out/vmlinux" | cut -f1), $(ls "$out/modules" | wc -l) modules)"
