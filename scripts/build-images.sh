#!/usr/bin/env bash
# Build the local cluster's container images offline (cached, idempotent) and optionally import them
# into containerd. A thin wrapper around `python -m harness.images`:
#
#   scripts/build-images.sh                      # build every non-lazy image that is missing/stale
#   scripts/build-images.sh build pause adapter  # some of them (aliases or full image names)
#   scripts/build-images.sh list                 # names, archives, up to date or not
#   scripts/build-images.sh import --address /run/containerd/containerd.sock
#
# Needs root (debootstrap, buildah's store), buildah and debootstrap; Go for scripts/build-addons.sh,
# which it runs when an addon binary is missing. Archives land in ${HPA_KIT_CACHE:-~/.cache/hpa-kit}/images.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$repo/.venv/bin/python"
[[ -x "$py" ]] || py=$(command -v python3)
if (($# == 0)); then set -- build; fi
cd "$repo"
exec "$py" -m harness.images "$@"
