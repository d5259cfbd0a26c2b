#!/usr/bin/env bash
# Install hpa-kit as a package into this project's own venv and run this project's tests with its
# pytest plugin. KIT selects what to install (default: the checkout two folders up, as a regular,
# non-editable install: the same files a PyPI install gets). Arguments go to pytest; the cluster
# comes from the plugin's settings (HPA_KIT_PROVIDER=local|kind|existing, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
kit=${KIT:-$(cd ../.. && pwd)}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

if [[ ! -x .venv/bin/pytest ]] || [[ ${REINSTALL:-1} == 1 ]]; then
  [[ -x .venv/bin/python ]] || "$python" -m venv .venv
  log=.venv/install.log
  echo "my-app: installing hpa-kit[harness] from $kit into $here/.venv (log $log)"
  # The build's own warnings go to the log; a failed install prints its tail.
  if ! { .venv/bin/pip install -q --upgrade pip &&
         .venv/bin/pip install -q "$kit[harness]" -r requirements.txt &&
         .venv/bin/pip install -q --force-reinstall --no-deps "$kit"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "my-app: installing the kit failed; the whole log is $here/$log" >&2
    exit 2
  fi
fi
# From here on nothing may come from the checkout: run outside it, without its PYTHONPATH.
unset PYTHONPATH
where=$(.venv/bin/python -c 'import harness, os; print(os.path.dirname(harness.__file__))')
case "$where" in
  "$here"/.venv/*) echo "my-app: hpa-kit imported from $where" ;;
  *) echo "my-app: hpa-kit imported from $where, not from this project's venv" >&2; exit 2 ;;
esac
exec .venv/bin/pytest "$@"
