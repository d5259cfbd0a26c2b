#!/usr/bin/env bash
# Print, or apply server-side, the Prometheus Operator CRDs for the pinned version.
#
#   scripts/operator-crds.sh                 # print the CRD YAML on stdout
#   scripts/operator-crds.sh --apply         # kubectl apply --server-side, then wait until Established
#   scripts/operator-crds.sh --where         # only say where the CRDs would come from
#
# Options:
#   --source auto|go|url   auto (default): the operator's Go module via `go mod download` when Go is
#                          installed (works offline behind a module proxy), else the release asset.
#   --version vX.Y.Z       override PROM_OPERATOR_VERSION from scripts/versions.env
#   --force-conflicts      with --apply: take ownership of fields another manager (e.g. Helm) set
#   -h, --help
# Environment: KUBECTL (default kubectl), KUBECONFIG, GO (default go), CURL (default curl),
#   PROM_OPERATOR_CRD_DIR (a directory of CRD YAML files to use instead, for air-gapped installs).
#
# Why server-side: the CRDs are several MB with long descriptions; client-side apply stores the whole
# object in the last-applied-configuration annotation, which exceeds the 256 KiB annotation limit
# ("metadata.annotations: Too long"). Server-side apply keeps no such annotation.
#
# The CRDs are upstream YAML and are never copied into this repository.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$REPO/scripts/versions.env"

MODULE=github.com/prometheus-operator/prometheus-operator
# Inside the operator's Go module, the CRDs its release bundle is built from.
MODULE_CRD_SUBDIR=example/prometheus-operator-crd
KUBECTL="${KUBECTL:-kubectl}"
GO="${GO:-go}"
CURL="${CURL:-curl}"

VERSION="${PROM_OPERATOR_VERSION:?PROM_OPERATOR_VERSION missing from scripts/versions.env}"
SOURCE=auto
MODE=print
FORCE=()

die() { echo "operator-crds: error: $*" >&2; exit 2; }
note() { echo "operator-crds: $*" >&2; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --apply) MODE=apply ;;
    --where) MODE=where ;;
    --source) [[ $# -ge 2 ]] || die "--source needs auto, go or url"; SOURCE="$2"; shift ;;
    --source=*) SOURCE="${1#*=}" ;;
    --version) [[ $# -ge 2 ]] || die "--version needs a tag like v0.85.0"; VERSION="$2"; shift ;;
    --version=*) VERSION="${1#*=}" ;;
    --force-conflicts) FORCE=(--force-conflicts) ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

[[ "$VERSION" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "version '$VERSION' is not a tag like v0.85.0"
case "$SOURCE" in auto|go|url) ;; *) die "--source must be auto, go or url, not '$SOURCE'" ;; esac

# The release asset for users with internet access. bundle.yaml also holds the operator's own
# Deployment and RBAC (in the `default` namespace); only its CustomResourceDefinitions are used.
RELEASE_URL="https://github.com/prometheus-operator/prometheus-operator/releases/download/${VERSION}/bundle.yaml"

# Keep only the CustomResourceDefinition documents of a multi-document YAML stream.
only_crds() {
  awk '
    function flush() { if (doc ~ /(^|\n)kind: CustomResourceDefinition(\n|$)/) { printf "---\n%s", doc; n++ } doc = "" }
    /^---[[:space:]]*$/ { flush(); next }
    { doc = doc $0 "\n" }
    END { flush(); if (n == 0) exit 3 }
  '
}

module_dir() {
  # `go mod download -json` works outside any module; run it from / so a go.mod nearby cannot
  # interfere. It honours GOPROXY/GOFLAGS/GOMODCACHE, so a module proxy or a warm cache is enough.
  local json dir
  json="$(cd / && GOFLAGS=-mod=mod "$GO" mod download -json "${MODULE}@${VERSION}" 2>&1)" || {
    note "go mod download ${MODULE}@${VERSION} failed:"; echo "$json" >&2; return 1; }
  dir="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p' | head -n1)"
  [[ -n "$dir" && -d "$dir/$MODULE_CRD_SUBDIR" ]] || {
    note "module ${MODULE}@${VERSION} has no $MODULE_CRD_SUBDIR (download said: $json)"; return 1; }
  printf '%s\n' "$dir/$MODULE_CRD_SUBDIR"
}

crds_from_dir() {
  local dir="$1" f found=0
  for f in "$dir"/*.yaml; do
    [[ -e "$f" ]] || continue
    found=1
    cat "$f"
    printf '\n'
  done
  [[ $found -eq 1 ]] || die "no *.yaml files in $dir"
}

crds_from_url() {
  command -v "$CURL" >/dev/null 2>&1 || die "$CURL not found: install curl, or Go (to use the module proxy), or set PROM_OPERATOR_CRD_DIR"
  "$CURL" -fsSL --retry 3 "$RELEASE_URL" | only_crds || die "could not fetch CRDs from $RELEASE_URL"
}

# Decide the source once, so --where and the real run agree.
CRD_DIR=""
if [[ -n "${PROM_OPERATOR_CRD_DIR:-}" ]]; then
  [[ -d "$PROM_OPERATOR_CRD_DIR" ]] || die "PROM_OPERATOR_CRD_DIR=$PROM_OPERATOR_CRD_DIR is not a directory"
  CRD_DIR="$PROM_OPERATOR_CRD_DIR"
  WHERE="directory $CRD_DIR (PROM_OPERATOR_CRD_DIR)"
elif [[ "$SOURCE" != url ]] && command -v "$GO" >/dev/null 2>&1 && CRD_DIR="$(module_dir)"; then
  WHERE="Go module ${MODULE}@${VERSION}: $CRD_DIR"
elif [[ "$SOURCE" == go ]]; then
  die "--source go: Go is not installed or ${MODULE}@${VERSION} could not be downloaded (check GOPROXY)"
else
  WHERE="release asset $RELEASE_URL (CustomResourceDefinitions only)"
fi

emit() {
  if [[ -n "$CRD_DIR" ]]; then crds_from_dir "$CRD_DIR"; else crds_from_url; fi
}

case "$MODE" in
  where)
    echo "$WHERE"
    ;;
  print)
    note "Prometheus Operator ${VERSION} CRDs from $WHERE"
    emit
    ;;
  apply)
    note "applying Prometheus Operator ${VERSION} CRDs (server-side) from $WHERE"
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    emit > "$tmp"
    "$KUBECTL" apply --server-side --field-manager=hpa-kit "${FORCE[@]}" -f "$tmp" >&2 || die \
      "kubectl apply failed. 'conflict' errors mean another tool manages these CRDs: re-run with --force-conflicts if hpa-kit should own them"
    # Poll rather than `kubectl wait --for=condition=Established`: on a CRD created a moment ago,
    # status.conditions is still null and kubectl wait errors out at once instead of waiting
    # ("conditions accessor error: <nil>"), which failed installs on fresh clusters.
    wait_s=${HPA_KIT_CRD_TIMEOUT:-60}
    deadline=$((SECONDS + wait_s))
    for crd in prometheuses.monitoring.coreos.com servicemonitors.monitoring.coreos.com; do
      until [[ "$("$KUBECTL" get crd "$crd" -o 'jsonpath={.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" == True ]]; do
        ((SECONDS < deadline)) || die \
          "CRD $crd was applied but is not Established after ${wait_s}s: see 'kubectl get crd $crd -o yaml' and the apiserver log"
        sleep 0.5
      done
    done
    note "CRDs established"
    ;;
esac
