#!/usr/bin/env bash
# Build the benchmark peer, prometheus-adapter, from its Go module into a cache outside the repo.
#
#   scripts/build-peer.sh                # build if missing (idempotent, cached by version)
#   scripts/build-peer.sh --print-path   # where the binary lands (does not build)
#
# Output: ${HPA_KIT_CACHE:-~/.cache/hpa-kit}/bin/peer/prometheus-adapter-$PEER_VERSION/adapter
#
# Same shape as scripts/build-binaries.sh: a generated tools module that requires the upstream
# module and builds its command, so nothing upstream is vendored into this repo. v0.12.0's go.mod
# has no replace directives today; the tools module keeps the recipe uniform (and lets a later
# version that grows replaces be pinned here the same way k8s.io/kubernetes is).
# Override the version with PEER_VERSION=v0.X.Y.
set -euo pipefail

PEER_MODULE=sigs.k8s.io/prometheus-adapter
PEER_VERSION=${PEER_VERSION:-v0.12.0}

CACHE=${HPA_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-kit}
OUT="$CACHE/bin/peer/prometheus-adapter-$PEER_VERSION"
BIN="$OUT/adapter"
if [[ "${1:-}" == "--print-path" ]]; then echo "$BIN"; exit 0; fi
command -v go >/dev/null || { echo "build-peer: 'go' not found; install Go >= 1.22 and retry" >&2; exit 2; }

log() { printf '[build-peer %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x "$BIN" ]]; then
  log "prometheus-adapter $PEER_VERSION: up to date ($BIN)"
  exit 0
fi

mkdir -p "$OUT" "$CACHE/gotools"
mod="$CACHE/gotools/prometheus-adapter-$PEER_VERSION"
mkdir -p "$mod"
log "prometheus-adapter $PEER_VERSION: preparing tools module in $mod"
(
  cd "$mod"
  [[ -f go.mod ]] || go mod init hpa-kit.local/prometheus-adapter-tools >/dev/null 2>&1
  dir=$(go mod download -json "$PEER_MODULE@$PEER_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$dir" ]] || {
    echo "build-peer: could not download $PEER_MODULE@$PEER_VERSION from the module proxy;" \
         "check GOPROXY/network, or set PEER_VERSION to a published version" >&2
    exit 2
  }
  go mod edit -require="$PEER_MODULE@$PEER_VERSION"
  # Carry over any replace directive that points at another module version (not a local path).
  while read -r from to; do
    [[ "$to" == ./* || "$to" == ../* ]] && continue
    go mod edit -replace="$from=$to"
  done < <(go mod edit -json "$dir/go.mod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    to = new["Path"] + ("@" + new["Version"] if new.get("Version") else "")
    frm = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    print(frm, to)
')
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/adapter"\n' "$PEER_MODULE" > tools.go
  GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
)

# Upstream's Makefile sets no version ldflags for the adapter binary; strip symbols only.
log "prometheus-adapter $PEER_VERSION: building cmd/adapter (cold: a few minutes on 2 cores)"
start=$SECONDS
(cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags tools -ldflags "-s -w" \
   -o "$BIN.tmp" "$PEER_MODULE/cmd/adapter")
mv "$BIN.tmp" "$BIN"
log "prometheus-adapter $PEER_VERSION: built in $((SECONDS - start))s -> $BIN"
