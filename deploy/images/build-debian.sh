#!/usr/bin/env bash
# Builds a minimal Debian root filesystem tar for Corral sandboxes:
# `debootstrap --variant=minbase` into a temporary directory, the mount-point
# directories Corral's runtimes expect, then a tar with numeric owners kept.
# Needs root (debootstrap creates files owned by many uids and runs chroot).
#
# The mirror is the one this machine's apt sources already use (nothing is
# hard-coded), so the script works behind the same proxies and snapshots as
# apt-get. The output is cached: when OUT.tar exists and is newer than this
# script, nothing is done.
set -euo pipefail

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} OUT.tar

Writes a Debian minbase rootfs tar to OUT.tar. Must run as root.
Environment:
  SUITE=bookworm       Debian suite to bootstrap
  MIRROR=URL           mirror to use (default: the first apt source of SUITE
                       found in /etc/apt/sources.list and sources.list.d/)
  INCLUDE=pkg1,pkg2    extra packages to install (default: none)
  CUSTOMIZE=SCRIPT     run SCRIPT ROOTFS_DIR (as root, on the host) after
                       debootstrap and before the tar is made
  DEBOOTSTRAP_CACHE=D  keep downloaded .debs in D between runs (optional)
USAGE
  exit 2
}

[ $# -eq 1 ] || usage
case "$1" in -h | --help) usage ;; esac
out=$1
suite=${SUITE:-bookworm}
script=$(readlink -f "${BASH_SOURCE[0]}")
me=${0##*/}

customize=${CUSTOMIZE:+$(readlink -f "$CUSTOMIZE")}
if [ -n "${CUSTOMIZE:-}" ] && [ ! -f "$customize" ]; then
  echo "$me: CUSTOMIZE=$CUSTOMIZE: no such file" >&2
  exit 1
fi
if [ -f "$out" ] && [ "$out" -nt "$script" ] &&
  { [ -z "$customize" ] || [ "$out" -nt "$customize" ]; }; then
  echo "$me: $out is up to date"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$me: debootstrap needs root; run as root (or through sudo)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "$me: debootstrap not found; run deploy/install-deps.sh" >&2
  exit 1
fi

# Prints "URI KEYRING" for the first "deb" source that serves $suite, from
# one-line (.list) and deb822 (.sources) files. KEYRING is "-" when the
# source names none.
find_mirror() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  local f
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 1
  awk -v suite="$suite" '
    function flush() {
      if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
        split(uris, u, " "); print u[1], (keyring == "" ? "-" : keyring); found = 1; exit
      }
      types = ""; suites = ""; uris = ""; keyring = ""
    }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      if ($0 ~ /^[ \t]*#/) next
      key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
      if (key == "types") types = $0
      else if (key == "suites") suites = $0
      else if (key == "uris") uris = $0
      else if (key == "signed-by") keyring = $0
      next
    }
    FNR == 1 { flush() }
    /^[ \t]*deb[ \t]/ {
      line = $0; opts = ""
      if (match(line, /\[[^]]*\]/)) { opts = substr(line, RSTART + 1, RLENGTH - 2); line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH) }
      n = split(line, w, /[ \t]+/)
      i = (w[1] == "") ? 2 : 1
      if (w[i + 2] == suite) {
        kr = "-"
        if (match(opts, /signed-by=[^ ]+/)) kr = substr(opts, RSTART + 10, RLENGTH - 10)
        print w[i + 1], kr; found = 1; exit
      }
    }
    END { if (!found) flush() }
  ' "${files[@]}"
}

keyring=-
if [ -n "${MIRROR:-}" ]; then
  mirror=$MIRROR
else
  read -r mirror keyring < <(find_mirror || true) || true
  if [ -z "${mirror:-}" ]; then
    echo "$me: no apt source for suite '$suite' in /etc/apt/sources.list*; set MIRROR=URL" >&2
    exit 1
  fi
fi

args=(--variant=minbase)
if [ "$keyring" != - ] && [ -f "$keyring" ]; then
  args+=(--keyring="$keyring")
fi
[ -n "${INCLUDE:-}" ] && args+=(--include="$INCLUDE")
if [ -n "${DEBOOTSTRAP_CACHE:-}" ]; then
  mkdir -p "$DEBOOTSTRAP_CACHE"
  args+=(--cache-dir="$(readlink -f "$DEBOOTSTRAP_CACHE")")
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/corral-debian.XXXXXX")
root=$work/rootfs
partial=

# debootstrap mounts /proc and /sys inside the target while it runs; if it
# dies half-way they stay mounted. Unmount everything below $work before
# removing it, and never cross into another file system while removing.
cleanup() {
  local mp
  if [ -r /proc/self/mountinfo ]; then
    awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo |
      sort -r | while IFS= read -r mp; do umount -l "$mp" 2>/dev/null || true; done
  fi
  rm -rf --one-file-system "$work"
  [ -z "$partial" ] || rm -f "$partial"
}
trap cleanup EXIT

echo "$me: debootstrap ${args[*]} $suite from $mirror"
start=$(date +%s)
if ! debootstrap "${args[@]}" "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  echo "$me: debootstrap failed; last lines of its log:" >&2
  tail -n 20 "$work/debootstrap.log" >&2
  [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 20 "$root/debootstrap/debootstrap.log" >&2
  exit 1
fi

# Mount points Corral's runtimes use; /dev is left empty (the runtime mounts
# its own, and Corral refuses device nodes in images), package caches and
# lists are dropped (they are large and go stale).
mkdir -p "$root"/{proc,dev,sys,tmp,workspace,etc,root}
chmod 1777 "$root/tmp"
find "$root/dev" -mindepth 1 -delete
rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/lib/apt/lists/* "${root:?}"/debootstrap
: >"$root/etc/resolv.conf"
printf 'corral\n' >"$root/etc/hostname"
if [ -n "$customize" ]; then
  echo "$me: customizing with $customize"
  bash "$customize" "$root"
fi

mkdir -p "$(dirname "$out")"
partial=$(mktemp "$(dirname "$out")/.${out##*/}.XXXXXX")
tar --create --file "$partial" --directory "$root" --numeric-owner \
  --one-file-system --sort=name --xattrs --xattrs-include='security.capability' .
chmod 0644 "$partial"
mv -f "$partial" "$out"
partial=
elapsed=$(($(date +%s) - start))
echo "$me: wrote $out in ${elapsed}s (tar $(du -h "$out" | cut -f1), tree $(du -sh --apparent-size "$root" | cut -f1))"
