#!/usr/bin/env bash
# Builds a busybox root filesystem tar for Corral sandboxes, from the
# busybox-static package: /bin/busybox, one symlink per applet in the
# directory busybox itself names (`busybox --list-full`), a minimal
# /etc/passwd and /etc/group, and the mount-point directories the runtimes
# expect. Every entry is owned 0:0 in the tar; root is not needed.
#
# The output is cached: when OUT.tar exists and is newer than this script and
# than the busybox binary, nothing is done.
set -euo pipefail

usage() {
  cat >&2 <<USAGE
usage: ${0##*/} OUT.tar

Writes a busybox rootfs tar to OUT.tar (owners 0:0, numeric).
Environment: BUSYBOX=/path/to/static/busybox (default /bin/busybox, from the
busybox-static package).
USAGE
  exit 2
}

[ $# -eq 1 ] || usage
case "$1" in -h | --help) usage ;; esac
out=$1
busybox=${BUSYBOX:-/bin/busybox}
script=$(readlink -f "${BASH_SOURCE[0]}")

if [ ! -x "$busybox" ]; then
  echo "${0##*/}: $busybox not found; install busybox-static (deploy/install-deps.sh)" >&2
  exit 1
fi
# A dynamically linked busybox would not run in a rootfs that has no libc.
if ! LC_ALL=C file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  if command -v file >/dev/null; then
    echo "${0##*/}: $busybox is not statically linked; install busybox-static" >&2
    exit 1
  fi
fi

if [ -f "$out" ] && [ "$out" -nt "$script" ] && [ "$out" -nt "$busybox" ]; then
  echo "${0##*/}: $out is up to date"
  exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/corral-busybox.XXXXXX")
partial=
trap 'rm -rf "$tmp"; [ -z "$partial" ] || rm -f "$partial"' EXIT
root=$tmp/rootfs
mkdir -p "$root"

# Mount points and the directories applets live in.
(cd "$root" && mkdir -p bin sbin usr/bin usr/sbin proc dev sys tmp workspace etc root)
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

install -m 0755 "$busybox" "$root/bin/busybox"

# One link per applet, in the directory busybox assigns it (--list-full);
# an applet that --list-full does not place still gets a link in /bin, so
# that every name of `busybox --list` resolves. Targets are absolute so that
# they resolve the same from every directory. One perl process (perl-base is
# Essential in Debian) makes all the links: a fork per link costs ~8 ms here,
# seconds in all, and python3 takes most of a second just to start.
count=$(
  { "$busybox" --list-full; echo '--'; "$busybox" --list; } | perl -e '
    use strict; use warnings;
    use File::Path qw(make_path);
    my $root = shift;
    my (%placed, %base, @names);
    my $after = 0;
    while (my $line = <STDIN>) {
      chomp $line;
      next if $line eq "";
      if ($line eq "--") { $after = 1; next; }
      if ($after) { push @names, $line; next; }
      $placed{$line} = 1;
      (my $b = $line) =~ s{.*/}{};
      $base{$b} = 1;
    }
    for my $name (@names) {
      $placed{"bin/$name"} = 1 unless $name eq "busybox" || $base{$name};
    }
    my $count = 0;
    for my $path (sort keys %placed) {
      next if $path eq "bin/busybox" || $path =~ m{^/} || $path =~ m{(^|/)\.\.(/|$)};
      my $full = "$root/$path";
      (my $dir = $full) =~ s{/[^/]*$}{};
      make_path($dir);
      unlink $full if -l $full || -e _;
      symlink("/bin/busybox", $full) or die "symlink $full: $!\n";
      $count++;
    }
    print "$count\n";
  ' "$root"
)

cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
printf 'corral\n' >"$root/etc/hostname"
: >"$root/etc/resolv.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/hostname" "$root/etc/resolv.conf"

# Write beside the destination, then rename: a reader never sees half a tar.
mkdir -p "$(dirname "$out")"
partial=$(mktemp "$(dirname "$out")/.${out##*/}.XXXXXX")
tar --create --file "$partial" --directory "$root" \
  --owner=0 --group=0 --numeric-owner --sort=name \
  --mtime=@0 .
chmod 0644 "$partial"
mv -f "$partial" "$out"
partial=
echo "${0##*/}: wrote $out ($count applet links, $(du -h "$out" | cut -f1))"
