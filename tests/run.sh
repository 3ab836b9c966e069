#!/usr/bin/env bash
# Builds Corral (Debug) and runs every test with CTest: unit, integration
# (the real daemon, CLI and sandboxes) and security tests, and the
# conformance suite on every runtime this machine can run (the qemu runtime
# with software emulation where KVM does not work). Needs root: the
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
# Image archives used by the tests, cached in the build tree, and the
# kernel the qemu runtime boots (Debian's cloud kernel, downloaded once).
bash "$root/deploy/images/build-busybox.sh" "$build/images/busybox.tar"
# The E2B gateway's base template (Debian with bash, sudo, python3, user).
bash "$root/deploy/images/build-e2b-base.sh" "$build/images/e2b-base.tar"
bash "$root/deploy/images/build-vm-kernel.sh" "$build/vm-kernel"
# The npm clients that judge the front doors (the MCP TypeScript SDK), from
# tests/js/package-lock.json; they need Node.js 20 (tests/js/install.sh).
bash "$root/tests/js/install.sh"
# A private Docker engine (and Podman service) for the docker runtime's
# tests, with their own data roots and sockets under
# /run/corral-test-engines; stopped again when the tests end. An engine that
# cannot start here makes its tests report "skipped", with the reason.
trap 'bash "$root/tests/engines.sh" stop' EXIT
bash "$root/tests/engines.sh" start
cd "$build"
status=0
ctest --output-on-failure --timeout 600 "$@" || status=$?
if [ "$status" -ne 0 ] && [ -f Testing/Temporary/LastTest.log ]; then
  # A recap at the very end, where a log cut to its tail still shows why:
  # each failed test's name and the last lines of its output.
  echo "=== failed tests, the end of each one's output ==="
  awk '
    / Test: / && $1 ~ /^[0-9]+\/[0-9]+$/ { name = $0; sub(/^[^:]*: /, "", name) }
    /^Output:$/ { n = 0; keep = 1; next }
    /^<end of output>$/ { keep = 0 }
    keep { lines[n++] = $0 }
    /^Test Failed\.$/ || /^Test Timeout/ {
      print "--- " name
      for (i = (n > 40 ? n - 40 : 0); i < n; i++) print lines[i]
    }' Testing/Temporary/LastTest.log
fi
exit "$status"
