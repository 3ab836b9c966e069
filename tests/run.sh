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
ctest --output-on-failure --timeout 600 "$@"
