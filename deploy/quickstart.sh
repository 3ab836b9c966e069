#!/usr/bin/env bash
# One command for a newcomer on a fresh Debian 12 / Ubuntu machine: installs
# the build dependencies, builds Corral, starts corrald in the background on
# the default socket, and runs a command in a fresh sandbox through the CLI.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CORRAL_BUILD_DIR:-$root/build}
socket=${CORRAL_SOCKET:-/run/corral/corrald.sock}
state=${CORRAL_STATE_DIR:-/var/lib/corral}

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi
bash "$root/deploy/install-deps.sh"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j2
# The kernel the qemu runtime boots its VMs with (downloaded once, cached),
# where the runtime looks by default.
bash "$root/deploy/images/build-vm-kernel.sh" /var/lib/corral/vm-kernel

corral=("$build/bin/corral" --socket "$socket")
if "${corral[@]}" version >/dev/null 2>&1; then
  echo "quickstart: corrald already answers on $socket"
else
  mkdir -p "$(dirname "$socket")" /var/log/corral
  log=/var/log/corral/corrald.log
  echo "quickstart: starting corrald (socket $socket, state $state, log $log)"
  nohup "$build/bin/corrald" --socket "$socket" --state-dir "$state" \
    >>"$log" 2>&1 </dev/null &
  for _ in $(seq 1 100); do
    "${corral[@]}" version >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
"${corral[@]}" runtimes
echo "quickstart: corral run -- sh -c 'echo pid \$\$; hostname; ls /sys/class/net'"
"${corral[@]}" run -- sh -c 'echo pid $$; hostname; ls /sys/class/net'
cat <<MSG

corrald is running (pid $(pgrep -x corrald | head -1)). Try:
  export CORRAL_SOCKET=$socket PATH=$build/bin:\$PATH
  corral run -- uname -a
  corral run --runtime qemu -- uname -r     # a VM with a kernel of its own
  id=\$(corral create --memory 256) && corral exec \$id -- ps aux && corral rm \$id
Stop it with: pkill -TERM -x corrald
MSG
