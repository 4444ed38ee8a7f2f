#!/usr/bin/env bash
# Set up a fresh machine, type-check the library and run the test suite: the README's test command; .ci/run
# calls it too.
# --no-install skips the installs (the environment is ready); other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--no-install" ]; then
    shift
else
    # The CPU wheel first: an unpinned torch requirement would otherwise pull several GB of CUDA packages.
    python -m pip install -q torch==2.13.0
    # constraints.txt holds the versions the suite passed with (scripts/refresh_constraints.sh renews it).
    python -m pip install -q -c constraints.txt -e ".[test]"
fi
# The library is type-checked as installed (py.typed ships); a type error fails the run before the tests.
bash scripts/typecheck.sh
set +e
python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
