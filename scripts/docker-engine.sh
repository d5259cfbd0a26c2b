#!/usr/bin/env bash
# A Docker engine for the kind provider on machines that ship only a docker CLI.
#
#   scripts/docker-engine.sh start    # use the engine that answers, else install docker.io and start one
#   scripts/docker-engine.sh status   # exit 0 if an engine answers; says whether this script started it
#   scripts/docker-engine.sh stop     # stop the dockerd this script started (never any other)
#   scripts/docker-engine.sh check    # `docker run --privileged` a tiny image (docker-imported busybox-static)
#
# The dockerd started here:
# * keeps its state apart from any system engine: data root /var/lib/hpa-kit/docker, exec root
#   /run/hpa-kit/docker, config + log in /var/lib/hpa-kit/docker-engine, pidfile /run/hpa-kit/dockerd.pid;
#   it serves the default socket (unix:///var/run/docker.sock), which kind and the docker CLI use;
# * has no default bridge (docker0): kind puts its nodes on its own "kind" network, and nothing else
#   here needs one, so the engine leaves no interface of its own on the host;
# * runs with --iptables=false --ip-masq=false: with iptables on, dockerd sets the host's FORWARD
#   policy to DROP and adds NAT chains, which breaks the local provider's pod network on the same
#   machine. kind needs neither: its node containers sit on a bridge the host reaches directly, and the
#   userland docker-proxy publishes the API server port on 127.0.0.1;
# * where the VM's capability bounding set lacks CAP_SYS_RESOURCE (bit 24 of CapBnd), uses
#   scripts/runc-nosysresource as its default runtime, because `docker run --privileged` (every kind
#   node) fails there with "unable to apply caps: operation not permitted".
#
# Env: HPA_KIT_DOCKER_DATA_ROOT, HPA_KIT_DOCKER_STATE, HPA_KIT_DOCKER_TIMEOUT (seconds, default 60).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DATA_ROOT=${HPA_KIT_DOCKER_DATA_ROOT:-/var/lib/hpa-kit/docker}
STATE=${HPA_KIT_DOCKER_STATE:-/var/lib/hpa-kit/docker-engine}
EXEC_ROOT=/run/hpa-kit/docker
PIDFILE=/run/hpa-kit/dockerd.pid
SOCKET=/var/run/docker.sock
WRAPPER=/usr/local/libexec/hpa-kit/runc-nosysresource
RUNTIME_NAME=hpa-kit-runc
TIMEOUT=${HPA_KIT_DOCKER_TIMEOUT:-60}

log() { printf '[docker-engine %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

answers() { timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

# Our dockerd: the pidfile names a live dockerd whose command line carries our config file.
our_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--config-file $STATE/daemon.json" || return 1
  echo "$pid"
}

lacks_sys_resource() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (( (16#$bnd >> 24 & 1) == 0 ))
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get install $*"
  apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null
  } || die "apt-get install $* failed; run it by hand to see why"
}

write_config() {
  mkdir -p "$STATE" "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$PIDFILE")"
  local runtime=""
  if lacks_sys_resource; then
    install -D -m 0755 "$here/runc-nosysresource" "$WRAPPER"
    runtime=$(printf ',\n  "runtimes": {"%s": {"path": "%s"}},\n  "default-runtime": "%s"' \
      "$RUNTIME_NAME" "$WRAPPER" "$RUNTIME_NAME")
    log "this VM's capability bounding set lacks CAP_SYS_RESOURCE: default runtime is $WRAPPER" \
        "(drops that capability from each container spec, then runs runc; edits logged to $STATE/runc-wrapper.log)"
  fi
  cat > "$STATE/daemon.json" <<EOF
{
  "data-root": "$DATA_ROOT",
  "exec-root": "$EXEC_ROOT",
  "pidfile": "$PIDFILE",
  "hosts": ["unix://$SOCKET"],
  "iptables": false,
  "ip-masq": false,
  "bridge": "none",
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}$runtime
}
EOF
}

start() {
  if pid=$(our_pid); then
    answers && { log "dockerd (pid $pid, started by this script) already answers"; return 0; }
  elif answers; then
    log "a Docker engine already answers on ${DOCKER_HOST:-unix://$SOCKET}: using it (not ours, never stopped here)"
    return 0
  fi
  command -v dockerd >/dev/null || apt_install docker.io
  command -v jq >/dev/null || apt_install jq
  command -v docker >/dev/null || apt_install docker.io
  write_config
  if [[ -S $SOCKET ]] && command -v fuser >/dev/null && ! fuser "$SOCKET" >/dev/null 2>&1; then
    rm -f "$SOCKET"  # stale socket of an engine that died
  fi
  log "starting dockerd (data root $DATA_ROOT, iptables off; log $STATE/dockerd.log)"
  HPA_KIT_RUNC_WRAPPER_LOG="$STATE/runc-wrapper.log" \
    setsid dockerd --config-file "$STATE/daemon.json" >>"$STATE/dockerd.log" 2>&1 < /dev/null &
  local child=$! t0=$SECONDS
  until answers; do
    if ! kill -0 "$child" 2>/dev/null; then
      tail -n 20 "$STATE/dockerd.log" >&2
      die "dockerd exited during start-up (log above, full log $STATE/dockerd.log)"
    fi
    (( SECONDS - t0 < TIMEOUT )) || { tail -n 20 "$STATE/dockerd.log" >&2; die "dockerd not answering after ${TIMEOUT}s"; }
    sleep 0.5
  done
  log "dockerd $(docker info --format '{{.ServerVersion}}') answers after $((SECONDS - t0))s (pid $(cat "$PIDFILE"))"
}

stop() {
  local pid
  if ! pid=$(our_pid); then
    log "no dockerd started by this script is running (nothing stopped)"
    return 0
  fi
  log "stopping dockerd pid $pid (its containers stop with it)"
  kill -TERM "$pid"
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { log "dockerd stopped"; rm -f "$PIDFILE"; return 0; }
    sleep 0.5
  done
  die "dockerd pid $pid still running after 60s; see $STATE/dockerd.log"
}

status() {
  local pid
  if pid=$(our_pid); then
    log "dockerd pid $pid started by this script (config $STATE/daemon.json)"
  fi
  if answers; then
    log "engine answers: $(docker info --format '{{.ServerVersion}} {{.Driver}} cgroup {{.CgroupVersion}} default runtime {{.DefaultRuntime}}')"
    return 0
  fi
  log "no Docker engine answers; start one with: scripts/docker-engine.sh start"
  return 1
}

# The one thing kind needs that fails on these VMs without the wrapper: a privileged container.
check() {
  local img=hpa-kit/busybox:local root
  answers || die "no Docker engine answers; run: scripts/docker-engine.sh start"
  if ! docker image inspect "$img" >/dev/null 2>&1; then
    [[ -x /bin/busybox ]] || apt_install busybox-static
    root=$(mktemp -d)
    mkdir -p "$root/bin"
    cp /bin/busybox "$root/bin/busybox"
    for tool in sh true cat id; do ln -s busybox "$root/bin/$tool"; done
    tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' - "$img" >/dev/null
    rm -rf "$root"
    log "imported $img from /bin/busybox"
  fi
  local out
  out=$(docker run --rm --privileged "$img" /bin/sh -c 'grep CapEff /proc/self/status') \
    || die "docker run --privileged $img failed (see above); default runtime: $(docker info --format '{{.DefaultRuntime}}')"
  log "docker run --privileged works ($out)"
}

[[ $(id -u) -eq 0 ]] || die "needs root (it installs packages and runs dockerd)"
case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  check) check ;;
  *) echo "usage: $0 start|stop|status|check" >&2; exit 2 ;;
esac
