#!/usr/bin/env bash
# Set up a fresh machine and run the test suite (the README's test command; .ci/run calls it too).
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU wheel first: an unpinned torch requirement would otherwise pull several GB of CUDA packages.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
set +e
python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
