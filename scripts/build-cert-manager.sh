#!/usr/bin/env bash
# Build cert-manager's controller and cainjector (for manifests/overlays/cert-manager) into the cache.
#
#   scripts/build-cert-manager.sh                 # build whatever is missing (idempotent, cached)
#   scripts/build-cert-manager.sh --print-dir     # where the binaries land
#   scripts/build-cert-manager.sh --print-crds-dir  # the module's deploy/crds (downloads the module)
#
# github.com/cert-manager/cert-manager publishes its library packages, but its commands live in
# nested modules that are not on the module proxy. So we build our own two small mains
# (images/cert-manager/{controller,cainjector}/main.go) against the pinned module, in a generated
# tools module, with the version ldflags upstream's make/00_mod.mk sets. The controller compiles in
# only the SelfSigned and CA issuers: no ACME, DNS providers, Vault or Venafi (a cold build is a
# fraction of upstream's). The webhook is not built: the CRDs carry their OpenAPI validation, serve
# one version (no conversion), and the controller's approver approves requests for cert-manager
# issuers without the webhook's identity fields.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

CACHE=${HPA_KIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hpa-kit}
OUT="$CACHE/bin/addons/cert-manager-$CERT_MANAGER_VERSION"
cm=github.com/cert-manager/cert-manager
if [[ "${1:-}" == "--print-dir" ]]; then echo "$OUT"; exit 0; fi
command -v go >/dev/null || { echo "build-cert-manager: 'go' not found; install Go >= 1.26 and retry" >&2; exit 2; }

module_dir() {
  local d
  d=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$cm@$CERT_MANAGER_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$d" && -d "$d" ]] || { echo "build-cert-manager: could not download $cm@$CERT_MANAGER_VERSION from the module proxy" >&2; exit 2; }
  echo "$d"
}
if [[ "${1:-}" == "--print-crds-dir" ]]; then echo "$(module_dir)/deploy/crds"; exit 0; fi

log() { printf '[build-cert-manager %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$OUT" "$CACHE/gotools"
src="$repo/images/cert-manager"
cmds=(controller cainjector)
for c in "${cmds[@]}"; do
  h=$(sha256sum "$src/$c/main.go" | cut -d' ' -f1)
  if [[ -x "$OUT/$c" && "$(cat "$OUT/$c.sha256" 2>/dev/null)" == "$h" ]]; then
    log "cert-manager $CERT_MANAGER_VERSION: $c up to date"
    continue
  fi
  mod="$CACHE/gotools/cert-manager-$CERT_MANAGER_VERSION"
  mkdir -p "$mod/$c"
  if [[ ! -f "$mod/go.mod" ]]; then
    log "cert-manager $CERT_MANAGER_VERSION: preparing tools module in $mod"
    (cd "$mod" && go mod init hpa-kit.local/cert-manager-tools >/dev/null 2>&1 && go mod edit -require="$cm@$CERT_MANAGER_VERSION")
  fi
  cp "$src/$c/main.go" "$mod/$c/main.go"
  (cd "$mod" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  ld="-s -w -X $cm/pkg/util.AppVersion=$CERT_MANAGER_VERSION -X $cm/pkg/util.AppGitCommit=unknown"
  log "cert-manager $CERT_MANAGER_VERSION: building $c (cold: a few minutes on 2 cores)"
  start=$SECONDS
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ld" -o "$OUT/$c.tmp" "./$c")
  mv "$OUT/$c.tmp" "$OUT/$c"
  echo "$h" > "$OUT/$c.sha256"
  log "cert-manager $CERT_MANAGER_VERSION: built $c in $((SECONDS - start))s"
done
log "cert-manager ready in $OUT"
