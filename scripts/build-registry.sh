#!/usr/bin/env bash
# Build go-containerregistry's in-memory OCI registry (cmd/registry) from its Go module into the
# cache; the `hpa-kit images push` integration test runs it on 127.0.0.1 (it only listens on localhost).
#
#   scripts/build-registry.sh              # build it unless present: $CACHE/bin/registry-<ver>/registry
#   scripts/build-registry.sh --print-path # where it is (built or not)
#
# The module has no replace directives, so `go install module/cmd/registry@version` builds it as released.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

CACHE=${HPA_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-kit}
DIR="$CACHE/bin/registry-$REGISTRY_VERSION"
log() { printf '[build-registry %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

case "${1:-}" in
  --print-path) echo "$DIR/registry"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-path]" >&2; exit 2 ;;
esac

if [[ -x "$DIR/registry" ]]; then log "registry $REGISTRY_VERSION up to date ($DIR/registry)"; exit 0; fi
command -v go >/dev/null || { echo "build-registry: 'go' not found; install Go >= 1.24 and retry" >&2; exit 2; }
mkdir -p "$DIR"
log "building registry from github.com/google/go-containerregistry/cmd/registry@$REGISTRY_VERSION"
start=$SECONDS
rm -rf "$DIR/.gobin"
CGO_ENABLED=0 GOBIN="$DIR/.gobin" go install -trimpath -ldflags "-s -w" \
  "github.com/google/go-containerregistry/cmd/registry@$REGISTRY_VERSION"
mv "$DIR/.gobin/registry" "$DIR/registry"
rmdir "$DIR/.gobin"
log "built registry in $((SECONDS - start))s -> $DIR/registry"
