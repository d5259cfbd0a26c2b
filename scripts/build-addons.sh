#!/usr/bin/env bash
# Build the static Go programs that go into the local cluster's FROM-scratch images.
#
#   scripts/build-addons.sh              # build whatever is missing (idempotent, cached by version)
#   scripts/build-addons.sh --print-dir  # where the binaries land
#
# Outputs (under ${HPA_KIT_CACHE:-~/.cache/hpa-kit}/bin/addons):
#   prometheus-operator-$PROM_OPERATOR_VERSION/operator
#   prometheus-operator-$PROM_OPERATOR_VERSION/prometheus-config-reloader
#   prometheus-$PROMETHEUS_VERSION/prometheus
#   pause            (from images/pause, rebuilt when its sources change; pause.sha256 beside it)
#
# CoreDNS is built by scripts/build-binaries.sh (into its --print-dir); harness/images/ takes it
# from there. The operator's version ldflags matter: it derives its default config-reloader image
# tag from github.com/prometheus/common/version.Version ("v" + Version), so an unset version
# would make it ask for an image that does not exist here.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

CACHE=${HPA_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-kit}
OUT="$CACHE/bin/addons"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-addons: 'go' not found; install Go >= 1.24 and retry" >&2; exit 2; }
mkdir -p "$OUT" "$CACHE/gotools"

log() { printf '[build-addons %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- pause (ours) ------------------------------------------------------------------------------
pause_src="$repo/images/pause"
pause_hash=$(cat "$pause_src/main.go" "$pause_src/go.mod" | sha256sum | cut -d' ' -f1)
if [[ -x "$OUT/pause" && "$(cat "$OUT/pause.sha256" 2>/dev/null)" == "$pause_hash" ]]; then
  log "pause: up to date"
else
  log "pause: building from images/pause"
  start=$SECONDS
  (cd "$pause_src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/pause.tmp" .)
  mv "$OUT/pause.tmp" "$OUT/pause"
  echo "$pause_hash" > "$OUT/pause.sha256"
  log "pause: built in $((SECONDS - start))s"
fi

# --- prometheus-operator + config-reloader ----------------------------------------------------
po_dir="$OUT/prometheus-operator-$PROM_OPERATOR_VERSION"
po_cmds=(operator prometheus-config-reloader)
missing=()
for c in "${po_cmds[@]}"; do [[ -x "$po_dir/$c" ]] || missing+=("$c"); done
if ((${#missing[@]} == 0)); then
  log "prometheus-operator $PROM_OPERATOR_VERSION: up to date"
else
  mkdir -p "$po_dir"
  mod="$CACHE/gotools/prometheus-operator-$PROM_OPERATOR_VERSION"
  mkdir -p "$mod"
  po=github.com/prometheus-operator/prometheus-operator
  log "prometheus-operator $PROM_OPERATOR_VERSION: preparing tools module in $mod"
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init hpa-kit.local/prometheus-operator-tools >/dev/null 2>&1
    # The operator's go.mod replaces its own pkg/apis/monitoring and pkg/client submodules with
    # directories (so `go install ...@version` refuses it); it also requires their published twins
    # at the same version, so a plain require from our own module resolves to the same code.
    go mod edit -require="$po@$PROM_OPERATOR_VERSION"
    go mod edit -replace="$po/pkg/apis/monitoring=$po/pkg/apis/monitoring@$PROM_OPERATOR_VERSION"
    go mod edit -replace="$po/pkg/client=$po/pkg/client@$PROM_OPERATOR_VERSION"
    cat > tools.go <<EOF
//go:build tools

package tools

import (
	_ "$po/cmd/operator"
	_ "$po/cmd/prometheus-config-reloader"
)
EOF
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
  )
  # Same ldflags as upstream's Makefile (GO_BUILD_LDFLAGS), with what we know offline.
  common=github.com/prometheus/common/version
  ld="-s -w -X $common.Version=${PROM_OPERATOR_VERSION#v} -X $common.Revision=unknown"
  ld+=" -X $common.Branch=release -X $common.BuildUser=hpa-kit -X $common.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
  for c in "${missing[@]}"; do
    log "prometheus-operator $PROM_OPERATOR_VERSION: building $c (cold: a few minutes on 2 cores)"
    start=$SECONDS
    (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags tools -ldflags "$ld" \
      -o "$po_dir/$c.tmp" "$po/cmd/$c")
    mv "$po_dir/$c.tmp" "$po_dir/$c"
    log "prometheus-operator $PROM_OPERATOR_VERSION: built $c in $((SECONDS - start))s"
  done
fi

# --- Prometheus ----------------------------------------------------------------------------------
# Debian's prometheus package is built without Kubernetes service discovery, so the operator's
# config (kubernetes_sd_configs) fails to load there. Build the real thing from its Go module:
# Prometheus 3.X.Y is tagged v0.3XX.Y in Go module terms.
prom_dir="$OUT/prometheus-$PROMETHEUS_VERSION"
if [[ -x "$prom_dir/prometheus" ]]; then
  log "prometheus $PROMETHEUS_VERSION: up to date"
else
  ver=${PROMETHEUS_VERSION#v}
  major=${ver%%.*}; rest=${ver#*.}; minor=${rest%%.*}; patch=${rest#*.}
  modver=$(printf 'v0.%d%02d.%d' "$major" "$minor" "$patch")
  mod="$CACHE/gotools/prometheus-$modver"
  mkdir -p "$mod" "$prom_dir"
  log "prometheus $PROMETHEUS_VERSION (module $modver): building (cold: several minutes on 2 cores)"
  start=$SECONDS
  (
    cd "$mod"
    [[ -f go.mod ]] || go mod init hpa-kit.local/prometheus-tools >/dev/null 2>&1
    go mod edit -require="github.com/prometheus/prometheus@$modver"
    # Prometheus' own go.mod pins fsnotify back to 1.7.0; keep the same.
    dir=$(go mod download -json "github.com/prometheus/prometheus@$modver" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
    sed -n 's#^replace \(.*\) => \(.*\) \(v[^ ]*\)$#\1=\2@\3#p' "$dir/go.mod" | sed 's/ v/@v/' | while read -r r; do
      go mod edit -replace="$r"
    done
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/prometheus/prometheus/cmd/prometheus"\n' > tools.go
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    v=github.com/prometheus/common/version
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -tags netgo \
      -ldflags "-s -w -X $v.Version=$ver -X $v.Revision=$modver -X $v.Branch=release" \
      -o "$prom_dir/prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus
  )
  mv "$prom_dir/prometheus.tmp" "$prom_dir/prometheus"
  log "prometheus $PROMETHEUS_VERSION: built in $((SECONDS - start))s"
fi

log "addons ready in $OUT"
ls -la "$OUT" "$po_dir" >&2
