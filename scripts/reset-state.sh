#!/usr/bin/env bash
# Remove every trace of earlier clusters so the next run starts as on a fresh machine: the local
# cluster (its processes, mounts, bridge, iptables rules, and its private containerd with every image
# it imported), kind clusters (node containers, their volumes, the kind network), the stacks'
# per-cluster certificates, kubeconfigs. Build caches stay: Go binaries, the
# base root-fs and image archives in ${HPA_KIT_CACHE:-~/.cache/hpa-kit}, keyed by their inputs.
#
# .ci/run calls this before the tests, so no test can pass on state a previous run left behind.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
state=${HPA_KIT_STATE:-$HOME/.local/state/hpa-kit}
log() { printf '[reset %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

for dir in "$state"/clusters/*/; do
  [[ -d "$dir" ]] || continue
  name=$(basename "$dir")
  log "deleting local cluster $name"
  .venv/bin/hpa-kit delete --provider local --name "$name"
done
# kind clusters (their nodes are Docker containers; only when an engine answers and kind is built).
kind=$(bash scripts/build-kind.sh --print-kind 2>/dev/null || true)
if [[ -x "$kind" ]] && docker info >/dev/null 2>&1; then
  for name in $("$kind" get clusters 2>/dev/null); do
    log "deleting kind cluster $name"
    .venv/bin/hpa-kit delete --provider kind --name "$name"
  done
fi
if [[ -d "$state" ]]; then
  log "removing $state"
  rm -rf "$state"
fi
log "no cluster state left; build caches kept in ${HPA_KIT_CACHE:-$HOME/.cache/hpa-kit}"
