#!/usr/bin/env bash
# The second device call of 2026-12-04 (results in run2/). Needs, in the repo root (both git-ignored):
#   .whl/  offline wheels: zarr, numcodecs, donfig, google-crc32c (cp312), hydra-core, omegaconf, antlr4 (pip wheel)
#   .old/  git archive 58733c9 | tar -x -C .old; cp -r .old/callbacks .old/responsibility/callbacks
# and hooktime.py (this folder) at .devrun/hooktime.py; run with carry [".whl", ".old", ".devrun"].
# Device run 2: is CUDA index_add_ flushing subnormals; gpu_check (fused kernel with scale, rounds without atomics,
# and CUDA graphs); paired A/B against 58733c9 (2 epochs); per-hook host time.
set -u
G=/tmp/gc; mkdir -p $G/ab
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3
python3 - > $G/atomics_subnormal.txt 2>&1 <<'PY'
import torch
x = torch.full((4, 1), 3e-39); acc = torch.zeros(2, 1)
idx = torch.tensor([0, 0, 1, 1])
cpu = acc.clone().index_add_(0, idx, x)
gpu = acc.cuda().index_add_(0, idx.cuda(), x.cuda()).cpu()
print("cpu", cpu.view(-1).tolist(), "cuda index_add_", gpu.view(-1).tolist(), "cuda add", (x.cuda()[0] + x.cuda()[1]).item())
PY
cat $G/atomics_subnormal.txt
OUT=$G timeout 300 bash scripts/gpu_check.sh > $G/gpu_check.out 2>&1; echo "gpu_check rc=$?" | tee -a $G/gpu_check.out
grep -E "passed|failed" $G/cuda_tests.log | tail -2
mkdir -p $OUT && tar czf $OUT/gc1.tar.gz -C /tmp gc
PY=python3; [ -x .venv-gpu-check/bin/python ] && PY=$PWD/.venv-gpu-check/bin/python
B="--model resnet18 --synthetic --accelerator gpu --precision bf16-mixed --settings b_neurons_plus_last_layer --samples 10000 --batch-size 128 --epochs 2 --repeats 2"
for i in 1 2; do
  (cd .old && PYTHONPATH=$PWD:/tmp/site timeout 60 $PY scripts/bench_overhead.py $B --workdir /tmp/abw --out $G/ab/old_$i.json > $G/ab/old_$i.log 2>&1)
  timeout 60 $PY scripts/bench_overhead.py $B --workdir /tmp/abw --out $G/ab/new_$i.json > $G/ab/new_$i.log 2>&1
done
PYTHONPATH=$PWD/scripts:/tmp/site $PY -c "
import json, bench_ab; from pathlib import Path
s = bench_ab.summarize(Path('$G/ab')); print(json.dumps(s)); Path('$G/ab/summary.json').write_text(json.dumps(s, indent=1))"
timeout 45 $PY .devrun/hooktime.py gpu 10000 > $G/hooktime_new.txt 2>&1
grep -E "ratio|ms/call" $G/hooktime_new.txt | head -12
python3 -c "import json; d=json.load(open('$G/summary.json')); print(json.dumps(d['exit_status']), d['results'].get('overhead_ratio_median'))"
tar czf $G.tar.gz -C /tmp gc && mkdir -p $OUT && cp $G.tar.gz $OUT/
