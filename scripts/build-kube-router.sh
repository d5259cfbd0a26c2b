#!/usr/bin/env bash
# Build kube-router, the local provider's NetworkPolicy enforcer, from its Go module.
#
#   scripts/build-kube-router.sh              # build it when missing (idempotent, cached by version)
#   scripts/build-kube-router.sh --print-dir  # where the binary lands
#
# Output: ${HPA_KIT_CACHE:-~/.cache/hpa-kit}/bin/kube-router-$KUBE_ROUTER_VERSION/kube-router
#
# The local provider runs it on the host in firewall-only mode (harness/cluster/flags.py). Why
# kube-router and not sigs.k8s.io/kube-network-policies: see manifests/README.md (NetworkPolicies).
# Its go.mod has no replace directives, so a tools module that requires it builds it as is. Upstream's
# Makefile sets pkg/version.Version and BuildDate by ldflags; Version must parse as a version (its
# startup checks compare it), so we set the module version.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

CACHE=${HPA_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-kit}
OUT="$CACHE/bin/kube-router-$KUBE_ROUTER_VERSION"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-kube-router: 'go' not found; install Go >= 1.22 and retry" >&2; exit 2; }

log() { printf '[build-kube-router %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ -x "$OUT/kube-router" ]]; then
  log "kube-router $KUBE_ROUTER_VERSION: up to date"
  exit 0
fi
mkdir -p "$OUT" "$CACHE/gotools"
kr=github.com/cloudnativelabs/kube-router/v2
mod="$CACHE/gotools/kube-router-$KUBE_ROUTER_VERSION"
mkdir -p "$mod"
log "kube-router $KUBE_ROUTER_VERSION: building (cold: several minutes on 2 cores)"
start=$SECONDS
(
  cd "$mod"
  [[ -f go.mod ]] || go mod init hpa-kit.local/kube-router-tools >/dev/null 2>&1
  go mod edit -require="$kr@$KUBE_ROUTER_VERSION"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s/cmd/kube-router"\n' "$kr" > tools.go
  GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
  v=$kr/pkg/version
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags tools \
    -ldflags "-s -w -X $v.Version=$KUBE_ROUTER_VERSION -X $v.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -o "$OUT/kube-router.tmp" "$kr/cmd/kube-router"
)
mv "$OUT/kube-router.tmp" "$OUT/kube-router"
log "kube-router $KUBE_ROUTER_VERSION: built in $((SECONDS - start))s"
