#!/usr/bin/env bash
# Run pytest from the repo venv, with two rules about runs that test nothing:
#
# * Exit 5 ("no tests collected/selected") is a success only when the caller narrowed the selection
#   on purpose (-k, -m or --deselect in the arguments, or HPA_KIT_ALLOW_EMPTY=1): then an empty
#   result is what was asked for. A run that asked for test paths and ran none stays exit 5.
# A JUnit XML of every run lands in reports/junit.xml. (Under CI=true a skip that is not in
# tests/allowed_skips.py fails the run; tests/conftest.py enforces that inside pytest.)
#
# Every other non-zero code (failures, errors, interrupted) is passed through unchanged.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

narrowed=${HPA_KIT_ALLOW_EMPTY:-0}
for a in "$@"; do
  case "$a" in -k|-k*|-m|-m*|--deselect|--deselect=*) narrowed=1 ;; esac
done

mkdir -p reports
.venv/bin/pytest --junitxml=reports/junit.xml "$@"
rc=$?

if [[ $rc -eq 5 ]]; then
  if [[ $narrowed == 1 ]]; then
    echo "run-tests: the selection ($*) matched no tests, as narrowed on purpose: exit 5 treated as success"
    exit 0
  fi
  echo "run-tests: pytest ran NO tests for: $* (exit 5). Nothing was proven; check the paths and the collection errors above." >&2
  exit 5
fi

exit $rc
