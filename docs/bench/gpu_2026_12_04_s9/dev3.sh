#!/usr/bin/env bash
# Device run 3 (session 9): fused fold kernel variants; paired A/B against 0f04fad (journal chunk rows fitted to
# the epoch, buffers allocated when first used, epoch-end flush without waiting); per-hook host time.
set -u
G=/tmp/gc; mkdir -p $G/ab
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit 3
VENV=.venv-gpu-check
python3 -m venv --system-site-packages --without-pip $VENV
python3 -c "import site; print('\n'.join(site.getsitepackages()))" > "$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-site.pth"
$VENV/bin/python -m pip install -q --no-deps --no-build-isolation -e . > $G/install.log 2>&1
PY=$PWD/$VENV/bin/python
$PY -c "import responsibility.callbacks, triton; print(triton.__version__)" || exit 4
echo "installed $(( $(date +%s) - T0 ))s"
timeout 200 $PY .devrun/kernel_sweep.py $G/kernel_sweep.json > $G/kernel_sweep.log 2>&1; echo "sweep rc=$? $(( $(date +%s) - T0 ))s"
$PY - <<'PY'
import json
d = json.load(open("/tmp/gc/kernel_sweep.json"))
for r in d["runs"]:
    if "error" in r: print(r["epochs"], r["mode"], r["variant"], r["error"][:120]); continue
    print(f'{r["epochs"]} {r["mode"]:15s} {r["variant"]:22s} best {r["best_s"]*1e3:7.3f} ms  {100*r["frac_best"]:5.1f}%  median {100*r["frac_median"]:5.1f}%  same {r["same_bits"]}')
PY
mkdir -p $OUT && tar czf $OUT/gc1.tar.gz -C /tmp gc
B="--model resnet18 --synthetic --accelerator gpu --precision bf16-mixed --settings b_neurons_plus_last_layer --samples 10000 --batch-size 128 --epochs 2 --repeats 2"
(cd .old && PYTHONPATH=$PWD:/tmp/site $PY -c "import responsibility; print('old code', responsibility.__file__)")
for i in 1 2 3; do
  (cd .old && PYTHONPATH=$PWD:/tmp/site timeout 60 $PY scripts/bench_overhead.py $B --workdir /tmp/abw --out $G/ab/old_$i.json > $G/ab/old_$i.log 2>&1)
  timeout 60 $PY scripts/bench_overhead.py $B --workdir /tmp/abw --out $G/ab/new_$i.json > $G/ab/new_$i.log 2>&1
  echo "ab round $i $(( $(date +%s) - T0 ))s"
done
PYTHONPATH=$PWD/scripts:/tmp/site $PY -c "
import json, bench_ab; from pathlib import Path
s = bench_ab.summarize(Path('$G/ab')); print(json.dumps(s)); Path('$G/ab/summary.json').write_text(json.dumps(s, indent=1))"
timeout 50 $PY .devrun/hooktime.py gpu 10000 > $G/hooktime_new.txt 2>&1
grep -E "ratio|ms/call" $G/hooktime_new.txt | head -14
echo "done $(( $(date +%s) - T0 ))s"
tar czf $OUT/gc.tar.gz -C /tmp gc
