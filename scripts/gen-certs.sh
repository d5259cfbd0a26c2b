#!/usr/bin/env bash
# Generate hpa-kit certificates with cfssl/cfssljson (a thin wrapper around `python -m harness.certs`).
#
#   scripts/gen-certs.sh serving --service custom-metrics-apiserver --namespace monitoring [--host H ...]
#                                [--out DIR] [--rotate-ca]
#   scripts/gen-certs.sh ca [--out DIR] [--rotate]
#   scripts/gen-certs.sh client --cn admin --org system:masters [--out DIR]
#
# Every command is idempotent: existing certificates that are still right are kept.
# Output goes to ./.state/certs unless --out is given. Set CFSSL / CFSSLJSON to use other binaries.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$REPO/.venv/bin/python" ]]; then
  PY="$REPO/.venv/bin/python"
else
  PY="$(command -v python3 || true)"
  if [[ -z "$PY" ]]; then
    echo "gen-certs: error: python3 not found: install Python 3.11+ or create $REPO/.venv" >&2
    exit 2
  fi
fi

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m harness.certs "$@"
