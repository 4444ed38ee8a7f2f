#!/usr/bin/env bash
# Device run 11 (session 10): CUDA tests on the working tree (journal blocks to the GPU through page-locked memory);
# store.fold() of a 100-epoch store, .devrun/old_tree (23cbfe6) against the working tree, alternating processes.
set -u
G=/tmp/gc11; mkdir -p $G
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3
VENV=.venv-gpu-check
python3 -m venv --system-site-packages --without-pip $VENV
python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-site.pth"
$VENV/bin/python -m pip install -q --no-deps --no-build-isolation -e . > $G/install.log 2>&1
PY=$PWD/$VENV/bin/python
$PY -c "import responsibility.callbacks" || exit 4
echo "installed $(( $(date +%s) - T0 ))s"
mapfile -t CUDA_TESTS < <(grep -rlE 'cuda.is_available|accelerator="gpu"|device="cuda"' tests --include='test_*.py' | sort)
timeout 100 $PY -m pytest -q -p no:cacheprovider -rs "${CUDA_TESTS[@]}" > $G/cuda_tests.log 2>&1; echo "cuda tests rc=$? $(( $(date +%s) - T0 ))s"; tail -2 $G/cuda_tests.log
for r in 1 2 3; do
  PYTHONPATH=$PWD/.devrun/old_tree:/tmp/site timeout 50 $PY .devrun/fold_long.py cuda 3 /tmp/fl 100 2>&1 | tail -1 | sed "s/^/round $r old: /"
  timeout 50 $PY .devrun/fold_long.py cuda 3 /tmp/fl 100 2>&1 | tail -1 | sed "s/^/round $r new: /"
  echo "  $(( $(date +%s) - T0 ))s"
done
rm -rf /tmp/fl
mkdir -p $OUT && tar czf $OUT/gc11.tar.gz -C /tmp gc11
