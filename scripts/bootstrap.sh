#!/usr/bin/env bash
# Install everything hpa-kit needs on a fresh Debian machine, idempotently.
#
#   scripts/bootstrap.sh            # system packages (when root) + Python venv
#   scripts/bootstrap.sh --cluster  # ... + upstream binaries and offline images for the local cluster
#   scripts/bootstrap.sh --print-packages  # the Debian packages it installs, one per line
#
# Each step is skipped when already done (dpkg status, a stamp keyed on pyproject.toml's hash,
# the binary cache), so a warm run takes seconds.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
log() { printf '[bootstrap %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

APT_PACKAGES=(
  # certificates
  golang-cfssl openssl
  # local cluster node
  containerd runc containernetworking-plugins conntrack iptables iproute2 ethtool socat kmod
  # kube-router (the local node's NetworkPolicy enforcer) keeps its address sets with ipset(8)
  ipset
  # real Prometheus for integration tests and the local cluster's Prometheus image
  prometheus
  # offline images (harness/images/common.py HOST_PACKAGES: every host input an image build reads)
  debootstrap buildah umoci skopeo busybox-static tar
  # the kind provider's runtime wrapper (scripts/runc-nosysresource) edits OCI specs with jq
  jq
)
if [[ "${1:-}" == "--print-packages" ]]; then printf '%s\n' "${APT_PACKAGES[@]}"; exit 0; fi

want_cluster=0
[[ "${1:-}" == "--cluster" ]] && want_cluster=1

if command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/hpa-kit-apt.log 2>&1 \
      || { echo "bootstrap: apt-get install failed; see /tmp/hpa-kit-apt.log" >&2; exit 1; }
    # Debian starts a packaged Prometheus service where an init system runs: we run our own.
    if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  fi
else
  for tool in cfssl cfssljson; do
    command -v "$tool" >/dev/null || log "warning: $tool not found; install golang-cfssl (certificate tests will fail)"
  done
fi

py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "bootstrap: Python >= 3.11 is required (found $("$py" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
stamp=".venv/.hpa-kit-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  log "creating Python environment in .venv"
  [[ -x .venv/bin/python ]] || "$py" -m venv .venv
  .venv/bin/python -m pip install -q -U pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.hpa-kit-*
  touch "$stamp"
fi

if ((want_cluster)); then
  log "building upstream binaries (cached in ~/.cache/hpa-kit; cold build takes ~10-20 min on 2 cores)"
  bash scripts/build-binaries.sh
  if [[ -x scripts/build-addons.sh ]]; then bash scripts/build-addons.sh; fi
  # the loopback registry `hpa-kit images push`'s integration test pushes to (seconds to build)
  bash scripts/build-registry.sh
  bash scripts/build-kube-router.sh
  # cert-manager's module and mains: its unit test checks the overlay against the module's CRD schemas,
  # and that test runs before any e2e test would otherwise build it (a fresh machine skipped it)
  bash scripts/build-cert-manager.sh
fi
log "ready"
