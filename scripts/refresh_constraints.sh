#!/usr/bin/env bash
# Rewrite constraints.txt with the newest versions the registries serve within pyproject.toml's bounds, but only
# after the whole test command passed with them in a brand-new virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q torch==2.13.0
"$venv/bin/python" -m pip install -q -e ".[test]"
PATH="$venv/bin:$PATH" bash scripts/run_tests.sh --no-install
{
    sed -n '/^#/p' constraints.txt
    "$venv/bin/python" -m pip freeze --exclude-editable | sed -e 's/+cpu$//' | grep -v '^responsibility'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt refreshed from $venv; review and commit it"
