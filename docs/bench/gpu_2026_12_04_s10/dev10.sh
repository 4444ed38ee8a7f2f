#!/usr/bin/env bash
# Device run 10 (session 10): gpu_check.sh on the final code.
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
python3 -c "import json; r=json.load(open('$G/summary.json'))['results']; [print(x['variant'][:45], round(x['r_gbps_median'], 3), 'GB/s', round(x['fraction_of_sequential_write'], 3), 'of seq write, top-k', round(x['topk_fraction_of_fold'], 3)) for x in r['fold_store'] if 'r_gbps_median' in x]"
mkdir -p $OUT && tar czf $OUT/gc.tar.gz -C /tmp gc
