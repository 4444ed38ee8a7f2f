#!/usr/bin/env bash
# Device run 7 (session 10): gpu_check on this session's code (CUDA tests incl. the fold since 84f6235), then
# store.fold() with R chunks of 1,024 vs 4,096 examples on the device, alternating.
set -u
G=/tmp/gc; mkdir -p $G
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3
VENV=.venv-gpu-check
python3 -m venv --system-site-packages --without-pip $VENV
python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-site.pth"
$VENV/bin/python -m pip install -q --no-deps --no-build-isolation -e . > $G/install.log 2>&1
PY=$PWD/$VENV/bin/python
$PY -c "import responsibility.callbacks" || exit 4
echo "installed $(( $(date +%s) - T0 ))s"
OUT=$G PYTHON=$PY timeout 240 bash scripts/gpu_check.sh > $G/gpu_check.out 2>&1; echo "gpu_check rc=$? $(( $(date +%s) - T0 ))s" | tee -a $G/gpu_check.out
grep -E "passed|failed" $G/cuda_tests.log | tail -2
python3 -c "import json; d=json.load(open('$G/summary.json')); r=d['results']; print(json.dumps(d['exit_status']), r['overhead_ratio_median'], r['overhead_ratios']); [print(x['epochs'], x['variant'][:30], round(x['fraction_of_copy_bandwidth_median'], 3)) for x in r['fold_kernel']]"
timeout 120 $PY .devrun/fold_chunks.py cuda 5 /tmp/gc/fold_chunks > $G/fold_chunks.out 2>&1; echo "fold_chunks rc=$? $(( $(date +%s) - T0 ))s"; tail -4 $G/fold_chunks.out
rm -rf /tmp/gc/fold_chunks/*.zarr
mkdir -p $OUT && tar czf $OUT/gc.tar.gz -C /tmp gc
