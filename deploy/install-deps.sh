#!/usr/bin/env bash
# Installs, idempotently, everything needed to build, run and test Corral on
# Debian 12 / Ubuntu 22.04+. Run as root (or through sudo).
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config ninja-build git ca-certificates
  # fixed dependencies (DESIGN.md)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libarchive-dev libsqlite3-dev catch2
  # added libraries: seccomp filters, capabilities, CLI parsing, TOML config,
  # systemd readiness
  libseccomp-dev libcap-dev libcli11-dev libtomlplusplus-dev libsystemd-dev
  # SHA-256 of imported image archives
  libssl-dev
  # JSON of OCI bundles (config.json), OCI image manifests and the Docker
  # Engine API
  nlohmann-json3-dev
  # the MCP server's Streamable HTTP transport (corral mcp --listen)
  libcpp-httplib-dev
  # static archives for corral-agent's compression filters
  zlib1g-dev liblzma-dev libzstd-dev libbz2-dev liblz4-dev
  # sandboxes, images, tests and benchmarks
  busybox-static debootstrap bubblewrap util-linux iproute2 procps psmisc tmux
  sqlite3 python3 e2fsprogs
  # the oci and docker runtimes, and the engines their tests run against
  runc crun docker.io podman uidmap skopeo umoci
  # the egress path: nftables rules (libnftables), rtnetlink (libmnl), DNS
  # messages (ldns); the network tests' fake internet serves DNS with
  # dnsmasq and checks TLS with openssl
  nftables libnftables-dev libmnl-dev libldns-dev dnsmasq-base openssl
  # the qemu runtime: QEMU (with virtiofsd), and what
  # deploy/images/build-vm-kernel.sh unpacks Debian's kernel with
  qemu-system-x86 lz4 binutils
)

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
