#!/usr/bin/env bash
# The device call of 2026-12-04 (later): run with carry [".whl", ".old", ".devrun"] (see next_run.sh for those).
# Device run 1: gpu_check (new code), per-hook host time old/new, paired A/B old/new (2 epochs).
set -u
G=/tmp/gc; mkdir -p $G/ab
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3
python3 -c "import triton, torch; print('triton', triton.__version__, 'torch', torch.__version__)" > $G/triton.txt 2>&1
OUT=$G timeout 330 bash scripts/gpu_check.sh > $G/gpu_check.out 2>&1; echo "gpu_check rc=$?" | tee -a $G/gpu_check.out
PY=python3; [ -x .venv-gpu-check/bin/python ] && PY=$PWD/.venv-gpu-check/bin/python
B="--model resnet18 --synthetic --accelerator gpu --precision bf16-mixed --settings b_neurons_plus_last_layer --samples 10000 --batch-size 128 --epochs 2 --repeats 2"
for i in 1 2; do
  (cd .old && PYTHONPATH=$PWD:/tmp/site timeout 60 $PY scripts/bench_overhead.py $B --workdir /tmp/abw --out $G/ab/old_$i.json > $G/ab/old_$i.log 2>&1)
  timeout 60 $PY scripts/bench_overhead.py $B --workdir /tmp/abw --out $G/ab/new_$i.json > $G/ab/new_$i.log 2>&1
done
(cd .old && PYTHONPATH=$PWD:/tmp/site $PY -c "import responsibility.callbacks as c; print(c.__file__)") > $G/ab/old_code.txt 2>&1
PYTHONPATH=$PWD/scripts:/tmp/site $PY -c "
import json, bench_ab; from pathlib import Path
s = bench_ab.summarize(Path('$G/ab')); print(json.dumps(s, indent=1)); Path('$G/ab/summary.json').write_text(json.dumps(s, indent=1))"
timeout 45 $PY .devrun/hooktime.py gpu 10000 > $G/hooktime_new.txt 2>&1
(cd .old && PYTHONPATH=$PWD:/tmp/site timeout 45 $PY ../.devrun/hooktime.py gpu 10000 > $G/hooktime_old.txt 2>&1)
tail -5 $G/hooktime_new.txt $G/hooktime_old.txt
cat $G/summary.json 2>/dev/null | head -60
tar czf $G.tar.gz -C /tmp gc && mkdir -p $OUT && cp $G.tar.gz $OUT/
