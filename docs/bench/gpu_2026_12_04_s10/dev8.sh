#!/usr/bin/env bash
# Device run 8 (session 10): store.fold() phases and writer variants on the H200 host; a py-spy profile of the folds.
set -u
G=/tmp/gc8; mkdir -p $G
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .devrun/py_spy-*.whl && export PYTHONPATH=/tmp/site || exit 3
VENV=.venv-gpu-check
python3 -m venv --system-site-packages --without-pip $VENV
python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-site.pth"
$VENV/bin/python -m pip install -q --no-deps --no-build-isolation -e . > $G/install.log 2>&1
PY=$PWD/$VENV/bin/python
$PY -c "import responsibility.callbacks" || exit 4
echo "installed $(( $(date +%s) - T0 ))s"
timeout 100 $PY .devrun/fold_phases_dev.py cuda 7 /tmp/fp > $G/fold_phases.out 2>&1; echo "fold_phases rc=$? $(( $(date +%s) - T0 ))s"; tail -4 $G/fold_phases.out
cp /tmp/fp/fold_phases.json $G/ 2>/dev/null
SPY=/tmp/site/bin/py-spy; [ -x $SPY ] || SPY=$(ls /tmp/site/*/py-spy 2>/dev/null | head -1)
timeout 60 $SPY record -r 500 -f raw -o $G/fold.raw --threads -- $PY .devrun/fold_phases_dev.py cuda 3 /tmp/fp2 > $G/spy.out 2>&1; echo "py-spy rc=$? $(( $(date +%s) - T0 ))s"; tail -2 $G/spy.out
rm -rf /tmp/fp /tmp/fp2
mkdir -p $OUT && tar czf $OUT/gc8.tar.gz -C /tmp gc8
