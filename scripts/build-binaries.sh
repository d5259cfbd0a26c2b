#!/usr/bin/env bash
# Build the upstream Go programs the local cluster (and the kind node image) need into a cache
# outside the repo. kubeadm and kubectl go into the kind node image (the machine's kubectl may be
# outside the supported version skew); scripts/build-kind.sh builds kind and crictl.
#
#   scripts/build-binaries.sh            # build everything missing (idempotent, cached by version)
#   scripts/build-binaries.sh --print-dir
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/<staging> module with
# a path inside its own tree. We generate a tiny tools module per version that requires it and
# replaces each staging module with its published v0.X.Y twin, then `go build` the commands with the
# version ldflags set so the binaries report their real version.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

CACHE=${HPA_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-kit}
BIN="$CACHE/bin/k8s-$K8S_VERSION"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN" "$CACHE/gotools"
command -v go >/dev/null || { echo "build-binaries: 'go' not found; install Go >= 1.25 and retry" >&2; exit 2; }

log() { printf '[build-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- Kubernetes -----------------------------------------------------------------------------
k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubeadm kubectl)
missing=()
for c in "${k8s_cmds[@]}"; do [[ -x "$BIN/$c" ]] || missing+=("$c"); done
if ((${#missing[@]})); then
  mod="$CACHE/gotools/k8s-$K8S_VERSION"
  mkdir -p "$mod"
  staging_version="v0.${K8S_VERSION#v1.}"
  log "preparing tools module for k8s.io/kubernetes $K8S_VERSION (staging $staging_version)"
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init hpa-kit.local/k8s-tools >/dev/null 2>&1
    dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    [[ -n "$dir" ]] || { echo "build-binaries: could not download k8s.io/kubernetes@$K8S_VERSION from the module proxy" >&2; exit 2; }
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    # Every staging module replaced inside kubernetes' own go.mod gets its published twin.
    for m in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$dir/go.mod"); do
      go mod edit -replace="$m=$m@$staging_version"
    done
    # Keep the rest of kubernetes' own replaces/pins consistent: copy its require block versions.
    cat > tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
  )
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ld="-s -w"
  for kv in "gitVersion=$K8S_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean" "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
    ld+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
  done
  for c in "${missing[@]}"; do
    log "building $c $K8S_VERSION (cold: several minutes each on 2 cores)"
    start=$SECONDS
    (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags tools -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c")
    mv "$BIN/$c.tmp" "$BIN/$c"
    log "built $c in $((SECONDS - start))s"
  done
fi

# --- etcd --------------------------------------------------------------------------------
if [[ ! -x "$BIN/etcd" ]]; then
  mod="$CACHE/gotools/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  log "building etcd $ETCD_VERSION"
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init hpa-kit.local/etcd-tools >/dev/null 2>&1
    go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
      go mod edit -replace="go.etcd.io/etcd/$m=go.etcd.io/etcd/$m@$ETCD_VERSION"
    done
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$BIN/etcd.tmp" "$BIN/etcd"
fi

# --- CoreDNS -------------------------------------------------------------------------------
if [[ ! -x "$BIN/coredns" ]]; then
  mod="$CACHE/gotools/coredns-$COREDNS_VERSION"
  mkdir -p "$mod"
  log "building coredns $COREDNS_VERSION"
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init hpa-kit.local/coredns-tools >/dev/null 2>&1
    go mod edit -require="github.com/coredns/coredns@$COREDNS_VERSION"
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/coredns/coredns"\n' > tools.go
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN/coredns.tmp" github.com/coredns/coredns
  )
  mv "$BIN/coredns.tmp" "$BIN/coredns"
fi

log "binaries ready in $BIN"
ls -la "$BIN" >&2
