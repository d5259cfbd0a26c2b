#!/usr/bin/env bash
# Build kind and crictl from their Go modules into the cache (no binary is downloaded or committed).
#
#   scripts/build-kind.sh               # build what is missing: $CACHE/bin/kind-<ver>/kind, crictl-<ver>/crictl
#   scripts/build-kind.sh --print-kind  # the kind to use: one on PATH if >= KIND_VERSION, else ours
#   scripts/build-kind.sh --print-crictl
#
# Both modules carry no replace directives, so `go install module@version` builds them as released.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

CACHE=${HPA_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-kit}
KIND_DIR="$CACHE/bin/kind-$KIND_VERSION"
CRICTL_DIR="$CACHE/bin/crictl-$CRICTL_VERSION"
log() { printf '[build-kind %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# version_ge A B: A >= B for vX.Y.Z strings.
version_ge() { [[ "$(printf '%s\n%s\n' "${1#v}" "${2#v}" | sort -V | head -n1)" == "${2#v}" ]]; }

path_kind() {
  local k v
  k=$(command -v kind 2>/dev/null) || return 1
  [[ "$k" -ef "$KIND_DIR/kind" ]] && return 1
  v=$("$k" version 2>/dev/null | awk '{print $2}') || return 1
  [[ -n "$v" ]] && version_ge "$v" "$KIND_VERSION" && echo "$k"
}

case "${1:-}" in
  --print-kind)
    path_kind || echo "$KIND_DIR/kind"
    exit 0 ;;
  --print-crictl) echo "$CRICTL_DIR/crictl"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-kind|--print-crictl]" >&2; exit 2 ;;
esac

command -v go >/dev/null || { echo "build-kind: 'go' not found; install Go >= 1.24 and retry" >&2; exit 2; }

build() {  # build NAME DIR PACKAGE@VERSION LDFLAGS
  local name=$1 dir=$2 pkg=$3 ld=$4 start=$SECONDS
  if [[ -x "$dir/$name" ]]; then log "$name up to date ($dir/$name)"; return; fi
  mkdir -p "$dir"
  log "building $name from $pkg"
  rm -rf "$dir/.gobin"
  CGO_ENABLED=0 GOBIN="$dir/.gobin" go install -trimpath -ldflags "$ld" "$pkg"
  mv "$dir/.gobin/$name" "$dir/$name"
  rmdir "$dir/.gobin"
  log "built $name in $((SECONDS - start))s -> $dir/$name"
}

if k=$(path_kind); then
  log "using kind on PATH: $k ($("$k" version))"
else
  build kind "$KIND_DIR" "sigs.k8s.io/kind@$KIND_VERSION" "-s -w"
fi
build crictl "$CRICTL_DIR" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" \
  "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
