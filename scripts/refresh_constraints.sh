#!/usr/bin/env bash
# Rewrite constraints.txt with the newest versions the registries serve within pyproject.toml's bounds, but only
# after the whole test command passed with them in a brand-new virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q torch==2.13.0 uv
# Resolved by uv, installed by pip. pip's resolver, given these bounds, backtracks for many minutes through s3fs's,
# aiobotocore's and moto's botocore pins, and unconstrained it ends on the newest torch with GBs of CUDA wheels (both
# seen on 2026-12-04); uv resolves them in seconds. torch stays at the version of the CPU wheel installed above.
"$venv/bin/python" -m pip freeze | sed -n 's/^torch==\([^+]*\).*/torch==\1/p' > "$venv/torch.txt"
"$venv/bin/uv" pip compile -q pyproject.toml --extra test --python "$venv/bin/python" -c "$venv/torch.txt" \
    -o "$venv/resolved.txt"
"$venv/bin/python" -m pip install -q -c "$venv/resolved.txt" -e ".[test]"
"$venv/bin/python" -m pip uninstall -q -y uv
PATH="$venv/bin:$PATH" bash scripts/run_tests.sh --no-install
{
    sed -n '/^#/p' constraints.txt
    "$venv/bin/python" -m pip freeze --exclude-editable | sed -e 's/+cpu$//' | grep -v '^responsibility'
} > constraints.txt.new
mv constraints.txt.new constraints.txt
echo "constraints.txt refreshed from $venv; review and commit it"
