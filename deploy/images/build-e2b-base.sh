#!/usr/bin/env bash
# Builds the image of the E2B gateway's default template, "base" (docs/e2b.md):
# Debian minbase (build-debian.sh) with what E2B's base template gives its
# programs: bash, sudo, python3 and a user `user` (uid 1000) whose home,
# /home/user, is a symlink to /workspace, the sandbox's writable and
# persistent directory (Corral's root filesystems are read-only). Import it
# as e2b-base:
#
#   sudo deploy/images/build-e2b-base.sh /var/cache/corral/e2b-base.tar
#   corral image import e2b-base /var/cache/corral/e2b-base.tar
#
# Cached like build-debian.sh: nothing is done when OUT.tar is newer than
# both scripts. Needs root.
set -euo pipefail
me=${0##*/}
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The customizing step, which build-debian.sh runs with the root filesystem.
if [ "${1:-}" = --customize ]; then
  root=$2
  chroot "$root" useradd --uid 1000 --user-group --shell /bin/bash \
    --no-create-home --home-dir /home/user user
  mkdir -p "$root/home"
  ln -sfn /workspace "$root/home/user"
  printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\n' >"$root/etc/sudoers.d/user"
  chmod 0440 "$root/etc/sudoers.d/user"
  # root's home is the cwd of commands run as root: image files are not
  # owned by the sandbox's uid, so it must be searchable by others.
  chmod 0755 "$root/root"
  exit 0
fi

if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $me OUT.tar" >&2
  exit 2
fi
customizer=$(mktemp "${TMPDIR:-/tmp}/corral-e2b-base.XXXXXX")
trap 'rm -f "$customizer"' EXIT
printf 'exec bash %q --customize "$1"\n' "$dir/$me" >"$customizer"
# The cache compares OUT.tar with CUSTOMIZE's time: give it this script's.
touch -r "$dir/$me" "$customizer"
INCLUDE=sudo,python3,ca-certificates CUSTOMIZE=$customizer \
  bash "$dir/build-debian.sh" "$1"
