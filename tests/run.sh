#!/usr/bin/env bash
# Builds Corral (Debug) and runs every test with CTest: unit, integration
# (the real daemon, CLI and sandboxes) and security tests. Needs root: the
# tests create real sandboxes. Extra arguments go to ctest (e.g. -R linux).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CORRAL_BUILD_DIR:-$root/build}

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi
bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j2
# Image archives used by the tests, cached in the build tree.
bash "$root/deploy/images/build-busybox.sh" "$build/images/busybox.tar"
cd "$build"
ctest --output-on-failure --timeout 600 "$@"
