#!/usr/bin/env bash
# Private container engines for the docker runtime's tests: a dockerd (from
# the docker.io package) and, where it runs, a Podman API service, each with
# its own data root, exec root, pidfile and Unix socket, so that they never
# touch a system Docker or Podman.
#
#   tests/engines.sh start    start what is not running yet (idempotent)
#   tests/engines.sh stop     stop both and remove their state
#   tests/engines.sh status   say what runs
#
# Sockets: /run/corral-test-engines/docker.sock and podman.sock; logs:
# /run/corral-test-engines/*.log. An engine that cannot start is reported
# (with the end of its log) and skipped: the tests that need it then report
# themselves skipped. Needs root.
set -uo pipefail

run=${CORRAL_ENGINES_RUN:-/run/corral-test-engines}
data=${CORRAL_ENGINES_DATA:-/var/lib/corral-test-engines}
docker_sock=$run/docker.sock
podman_sock=$run/podman.sock
docker_pidfile=$run/docker.pid
podman_pidfile=$run/podman.pid
# How long an engine may take to answer /_ping after it was started.
start_timeout=${CORRAL_ENGINES_TIMEOUT:-60}

say() { echo "engines: $*"; }

# api SOCKET METHOD TARGET: one HTTP/1.0 request to the engine on SOCKET;
# prints the answer's body. perl (perl-base is Essential in Debian) rather
# than curl, which a fresh machine may lack.
api() {
  # shellcheck disable=SC2016 # perl code, not shell
  timeout 20 perl -MIO::Socket::UNIX -e '
    my ($path, $method, $target) = @ARGV;
    my $s = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM) or exit 1;
    print $s "$method $target HTTP/1.0\r\nHost: engine\r\n\r\n";
    local $/; my $answer = <$s>; defined $answer or exit 1;
    my ($head, $body) = split /\r\n\r\n/, $answer, 2;
    $head =~ m{^HTTP/1\.[01] 2\d\d } or exit 1;
    print $body // "";
  ' "$@" 2>/dev/null
}

# ping SOCKET: true when the engine on SOCKET answers GET /_ping with OK.
ping_socket() {
  [ -S "$1" ] || return 1
  local answer
  answer=$(api "$1" GET /_ping) || return 1
  [ "$answer" = "OK" ]
}

# alive PIDFILE: true when the pid in PIDFILE runs.
alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# wait_ping SOCKET PIDFILE LOG NAME: waits (bounded) until SOCKET answers;
# fails early when the engine's process exited.
wait_ping() {
  local deadline=$((SECONDS + start_timeout))
  while [ $SECONDS -lt $deadline ]; do
    if ping_socket "$1"; then return 0; fi
    if ! alive "$2"; then
      say "$4 exited during start; end of $3:"
      tail -n 20 "$3" 2>/dev/null | sed 's/^/  /'
      return 1
    fi
    sleep 0.2
  done
  say "$4 did not answer on $1 within ${start_timeout}s; end of $3:"
  tail -n 20 "$3" 2>/dev/null | sed 's/^/  /'
  return 1
}

# stop_pidfile PIDFILE NAME: SIGTERM, then SIGKILL after 20 s.
stop_pidfile() {
  local pid
  alive "$1" || { rm -f "$1"; return 0; }
  pid=$(cat "$1")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$2 (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.5
  fi
  rm -f "$1"
  say "stopped $2 (pid $pid)"
}

# Unmounts everything below DIR (overlay layers, shm, netns files an engine
# left behind after an unclean stop), deepest first.
unmount_below() {
  local dir=$1
  [ -d "$dir" ] || return 0
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' \
    /proc/self/mountinfo | sort -r | while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done
}

start_docker() {
  if ping_socket "$docker_sock"; then
    say "dockerd already answers on $docker_sock (pid $(cat "$docker_pidfile" 2>/dev/null || echo '?'))"
    return 0
  fi
  if ! command -v dockerd >/dev/null; then
    say "dockerd not installed (apt-get install docker.io); Docker tests will be skipped"
    return 1
  fi
  # A stale pidfile or a half-dead engine from an earlier run.
  stop_pidfile "$docker_pidfile" dockerd
  rm -f "$docker_sock"
  mkdir -p "$run" "$data/docker" "$run/docker-exec"
  chmod 0700 "$run" "$data"
  local log=$run/docker.log
  # No bridge and no iptables: every sandbox runs with network "none", and
  # the host's firewall must stay as it is. No userland proxy, no
  # live-restore (stop means stop), containerd started by dockerd itself
  # under the private exec root.
  (cd "$run" && exec setsid dockerd \
    --data-root "$data/docker" \
    --exec-root "$run/docker-exec" \
    --pidfile "$docker_pidfile" \
    -H "unix://$docker_sock" \
    --storage-driver overlay2 \
    --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
    --userland-proxy=false \
    --log-driver json-file \
    --default-ulimit nofile=20000:20000 \
    >"$log" 2>&1 </dev/null) &
  # dockerd writes the pidfile itself, a moment after it starts; until then
  # remember the shell's child.
  local pid=$!
  for _ in $(seq 1 50); do
    [ -s "$docker_pidfile" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -s "$docker_pidfile" ] || echo "$pid" >"$docker_pidfile"
  if wait_ping "$docker_sock" "$docker_pidfile" "$log" dockerd; then
    say "started dockerd (pid $(cat "$docker_pidfile")) on $docker_sock, data $data/docker, log $log"
    return 0
  fi
  stop_pidfile "$docker_pidfile" dockerd
  return 1
}

start_podman() {
  if ping_socket "$podman_sock"; then
    say "podman service already answers on $podman_sock (pid $(cat "$podman_pidfile" 2>/dev/null || echo '?'))"
    return 0
  fi
  if ! command -v podman >/dev/null; then
    say "podman not installed (apt-get install podman); Podman tests will be skipped"
    return 1
  fi
  stop_pidfile "$podman_pidfile" "podman service"
  rm -f "$podman_sock"
  mkdir -p "$run/podman-run" "$run/podman-tmp" "$data/podman/storage" \
    "$data/podman/volumes"
  chmod 0700 "$run" "$data"
  local conf=$run/containers.conf storage=$run/storage.conf
  # What PLATFORM.md says Podman needs on this host: cgroupfs (no systemd
  # manager for the engine), file events (no journald), runc (crun refuses
  # the hybrid cgroup layout), and nofile and nproc limits within the
  # service's own hard ones: Podman's defaults are higher, and runc cannot
  # raise them where the service lacks CAP_SYS_RESOURCE.
  local nproc
  nproc=$(ulimit -Hu)
  case $nproc in unlimited | '' | *[!0-9]*) nproc=32768 ;; esac
  [ "$nproc" -le 32768 ] || nproc=32768
  cat >"$conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=$nproc:$nproc"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$run/podman-events.log"
runtime = "runc"
tmp_dir = "$run/podman-tmp"
volume_path = "$data/podman/volumes"
static_dir = "$data/podman/libpod"
CONF
  cat >"$storage" <<CONF
[storage]
driver = "overlay"
runroot = "$run/podman-run"
graphroot = "$data/podman/storage"
CONF
  local log=$run/podman.log
  # conmon writes an "oom" marker into its working directory when a
  # container is OOM-killed: give it one of ours, not the caller's.
  (cd "$run/podman-run" && CONTAINERS_CONF=$conf CONTAINERS_STORAGE_CONF=$storage exec setsid \
    podman --root "$data/podman/storage" --runroot "$run/podman-run" \
    --cgroup-manager cgroupfs --events-backend file \
    system service --time=0 "unix://$podman_sock" \
    >"$log" 2>&1 </dev/null) &
  echo $! >"$podman_pidfile"
  if wait_ping "$podman_sock" "$podman_pidfile" "$log" "podman service"; then
    say "started podman service (pid $(cat "$podman_pidfile")) on $podman_sock, storage $data/podman, log $log"
    return 0
  fi
  stop_pidfile "$podman_pidfile" "podman service"
  return 1
}

# Removes every container of an engine before it stops, so that no
# container process outlives it (dockerd without live-restore kills them
# too, Podman's service does not).
remove_containers() {
  local sock=$1 ids
  ping_socket "$sock" || return 0
  ids=$(api "$sock" GET '/v1.41/containers/json?all=true' |
    grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4)
  for id in $ids; do
    api "$sock" DELETE "/v1.41/containers/$id?force=true&v=true" >/dev/null
  done
}

stop_all() {
  remove_containers "$podman_sock"
  stop_pidfile "$podman_pidfile" "podman service"
  rm -f "$podman_sock"
  remove_containers "$docker_sock"
  stop_pidfile "$docker_pidfile" dockerd
  rm -f "$docker_sock"
  # What the engines leave mounted (overlay layers, netns, shm) and their
  # state: nothing of them survives a stop.
  unmount_below "$run"
  unmount_below "$data"
  rm -rf "$run" "$data"
}

status_all() {
  local rc=0
  if ping_socket "$docker_sock"; then
    say "dockerd: running (pid $(cat "$docker_pidfile" 2>/dev/null || echo '?')) on $docker_sock"
  else
    say "dockerd: not running"
    rc=1
  fi
  if ping_socket "$podman_sock"; then
    say "podman service: running (pid $(cat "$podman_pidfile" 2>/dev/null || echo '?')) on $podman_sock"
  else
    say "podman service: not running"
    rc=1
  fi
  return $rc
}

if [ "$(id -u)" -ne 0 ]; then
  say "needs root"
  exit 1
fi

case "${1:-}" in
  start)
    start_docker || say "continuing without dockerd"
    start_podman || say "continuing without podman"
    exit 0
    ;;
  stop) stop_all ;;
  status) status_all ;;
  *)
    echo "usage: ${0##*/} start|stop|status" >&2
    exit 2
    ;;
esac
