#!/usr/bin/env bash
# Install what the tests need and run the whole suite. This is the README's test command and what CI runs.
# The test environment is pinned: constraints/test.txt holds the exact versions the suite passed with (written by
# scripts/freeze_test_constraints.py), so a new release on the registry cannot turn a fresh machine red.
# pytest exits 5 when it collects no test; that is reported, not hidden, but does not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -c constraints/test.txt torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet --disable-pip-version-check -c constraints/test.txt -e ".[test]"
set +e
python -m pytest -q -p no:cacheprovider --durations=15 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests (exit 5)"
  exit 0
fi
exit "$rc"
