#!/usr/bin/env bash
# Device run 5 (session 9): journal write of one epoch by column-chunk width; fused kernel at 1,024 / 2,048 columns
# per program.
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
timeout 90 $PY .devrun/journal_write.py /tmp/jw 13273,4096,2048 15 > $G/journal_write.txt 2>&1; echo "jw rc=$? $(( $(date +%s) - T0 ))s"
cat $G/journal_write.txt | tail -4
timeout 120 $PY .devrun/block_width.py $G/block_width.json > $G/block_width.log 2>&1; echo "bw rc=$? $(( $(date +%s) - T0 ))s"
tail -5 $G/block_width.log
mkdir -p $OUT && tar czf $OUT/gc.tar.gz -C /tmp gc
