#!/usr/bin/env bash
# Type-check the library with mypy, as it is installed: callbacks/ is the package responsibility.callbacks
# (pyproject's package-dir), which static tools cannot follow through setuptools' editable-install finder.
# So the check runs on a tree of symlinks laid out like the wheel; reported paths are mapped back to the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree"
cp -rs "$root/responsibility" "$tree/responsibility"
cp -rs "$root/callbacks" "$tree/responsibility/callbacks"
find "$tree" -name __pycache__ -prune -exec rm -rf {} +
cd "$tree"
set +e
python -m mypy --config-file "$root/pyproject.toml" --cache-dir "$root/build/.mypy_cache" -p responsibility "$@" \
    | sed -e 's#^responsibility/callbacks/#callbacks/#'
rc=${PIPESTATUS[0]}
exit "$rc"
