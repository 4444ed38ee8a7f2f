#!/usr/bin/env bash
# The GPU check of issue 12, in one short call (about 5 minutes on a CUDA machine):
#   1. the CUDA tests (tests that skip without CUDA: device snapshot and Δw, per-example on CUDA, fold on CUDA);
#   2. the recorder's training overhead on a ResNet-18-sized model (11.2M parameters; neuron granularity
#      everywhere, weight granularity on the classifier, uniform attribution, bf16-mixed, random 28x28 images so
#      nothing is downloaded), alternating baseline / with callback;
#   3. the fold kernel against the device's copy bandwidth (kernel only, a large accumulator), and store.fold()
#      on the device end to end (journal read, R and top-k written) against a sequential write of the same bytes.
# Every step writes JSON (and its log) into $OUT (default ./gpu_check_out); summary.json says what ran and how it
# ended. A failing step does not stop the later ones; the exit status is that of the first failure.
#
#   bash scripts/gpu_check.sh                 # on a CUDA machine
#   bash scripts/gpu_check.sh --cpu-smoke     # everything shrunk, on the CPU: checks the script itself
#
# It uses whatever torch is importable. When the project itself is not importable, it makes a venv
# ($GPU_CHECK_VENV, default .venv-gpu-check) that sees the running Python's packages, so that the machine's torch is
# reused, and installs the project there: offline first (the project alone, its dependencies already importable, for
# example from wheels on PYTHONPATH), else with pip and constraints.txt minus its torch pin.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu_check_out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SMOKE=0
if [ "${1:-}" = "--cpu-smoke" ]; then SMOKE=1; fi
PY=${PYTHON:-python3}
START=$(date +%s)

log() { echo "[gpu_check $(($(date +%s) - START))s] $*"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: no importable torch for $PY (install torch first)" >&2
    exit 2
fi
IMPORTS="import responsibility, responsibility.callbacks, zarr, hydra, lightning"
if ! "$PY" -c "$IMPORTS" 2>/dev/null; then
    VENV=${GPU_CHECK_VENV:-.venv-gpu-check}
    log "responsibility is not importable: installing it into $VENV"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv --system-site-packages --without-pip "$VENV" || exit 2
        # A venv made from inside another venv sees the base interpreter's packages, not that venv's (where the
        # machine's torch usually is): a .pth file adds the running Python's site-packages (its pip too: no ensurepip
        # needed) after the new venv's own.
        "$PY" -c "import site; print('\n'.join(site.getsitepackages()))" \
            >"$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/outer-site.pth"
    fi
    PY=$VENV/bin/python
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    # Offline first: on a machine without an index, pip would spend minutes retrying one.
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1
    if ! "$PY" -c "$IMPORTS" 2>>"$OUT/install.log"; then
        grep -v -E '^(torch|nvidia-[a-z0-9-]+|triton)==' constraints.txt >"$OUT/constraints-without-torch.txt"
        "$PY" -m pip install -q -c "$OUT/constraints-without-torch.txt" -e ".[test]" >>"$OUT/install.log" 2>&1
        "$PY" -c "$IMPORTS" || { echo "gpu_check: install failed, see $OUT/install.log" >&2; exit 2; }
    fi
fi

if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu ACCEL=cpu PRECISION=bf16-mixed
    OVERHEAD_ARGS=(--samples 64 --batch-size 32 --repeats 1)
    KERNEL_ARGS=(--examples 4000 --columns 256 --epochs 1 --repeats 1 --copy-gib 0.0625)
    STORE_ARGS=(--examples 2000 --columns 256 --epochs 1 --repeats 1 --store-repeats 1 --copy-gib 0.0625)
else
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: torch.cuda.is_available() is False (use --cpu-smoke to check the script on a CPU)" >&2
        exit 2
    fi
    DEVICE=cuda ACCEL=gpu PRECISION=bf16-mixed
    OVERHEAD_ARGS=(--samples 10000 --batch-size 128 --repeats 5)
    # 100,000 x 8,192 float32 accumulator (3.3 GB): large enough that launch overheads do not hide the bandwidth.
    KERNEL_ARGS=(--examples 100000 --columns 8192 --epochs 1 3 --repeats 5 --copy-gib 4)
    # issue 12's store: 10,000 examples x 1,562 units, one epoch of batch 64.
    STORE_ARGS=(--examples 10000 --columns 1562 --epochs 1 --repeats 3 --store-repeats 3 --copy-gib 1)
fi

FIRST_FAIL=0
declare -A RC
step() {  # step NAME TIMEOUT_S COMMAND...: runs it with its log in $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    log "$name: $*"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    RC[$name]=$rc
    tail -n 25 "$OUT/$name.log"
    log "$name: exit $rc"
    if [ "$rc" -ne 0 ] && [ "$FIRST_FAIL" -eq 0 ]; then FIRST_FAIL=$rc; fi
}

"$PY" - "$OUT/environment.json" <<'EOF'
import json, os, platform, sys, torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda, "cpus": os.cpu_count(), "platform": platform.platform()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(device=p.name, device_memory_gib=p.total_memory / 2**30, capability=f"{p.major}.{p.minor}")
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(info)
EOF

WORK=$OUT/work
mkdir -p "$WORK"
# 1. Tests that need CUDA (they skip without it: in the smoke run they are collected and skipped).
mapfile -t CUDA_TESTS < <(grep -rlE 'cuda.is_available|accelerator="gpu"|device="cuda"' tests --include='test_*.py' | sort)
if [ "${#CUDA_TESTS[@]}" -eq 0 ]; then  # pytest without paths would run the whole suite
    echo "gpu_check: no test file mentions CUDA" >&2
    CUDA_TESTS=(tests/callbacks/test_cuda.py)
fi
step cuda_tests 150 "$PY" -m pytest -q -p no:cacheprovider -rs --junitxml="$OUT/cuda_tests.xml" "${CUDA_TESTS[@]}"
# 2. Training overhead, ResNet-18, uniform attribution (the setting the issue's <= 1.02x target is for).
step overhead_resnet18 240 "$PY" scripts/bench_overhead.py --model resnet18 --synthetic --accelerator "$ACCEL" \
    --precision "$PRECISION" --settings b_neurons_plus_last_layer "${OVERHEAD_ARGS[@]}" \
    --workdir "$WORK/overhead" --out "$OUT/overhead_resnet18.json"
# 3. The fold: kernel against the copy bandwidth (no store), then store.fold() on the device end to end.
# The library kernel (on CUDA with Triton: the fused kernel), the rounds of distinct ids it takes without Triton,
# and the Triton kernel alone (not timed on the CPU).
step fold_kernel 120 "$PY" scripts/bench_fold.py --device "$DEVICE" --skip-store \
    --kernels "library index_add_fold" "distinct rounds" "fused triton" "${KERNEL_ARGS[@]}" --workdir "$WORK/fold" \
    --out "$OUT/fold_kernel.json"
step fold_store 120 "$PY" scripts/bench_fold.py --device "$DEVICE" --kernels "library index_add_fold" \
    "${STORE_ARGS[@]}" --workdir "$WORK/fold" --out "$OUT/fold_store.json"
rm -rf "$WORK"

"$PY" - "$OUT" "$SMOKE" "$(($(date +%s) - START))" \
    "cuda_tests=${RC[cuda_tests]}" "overhead_resnet18=${RC[overhead_resnet18]}" \
    "fold_kernel=${RC[fold_kernel]}" "fold_store=${RC[fold_store]}" <<'EOF'
import json, sys
from pathlib import Path
out, smoke, seconds = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
steps = {k: int(v) for k, v in (a.split("=") for a in sys.argv[4:])}
summary = {"cpu_smoke": smoke, "seconds": seconds, "exit_status": steps, "results": {}}
if (out / "overhead_resnet18.json").exists():
    o = json.loads((out / "overhead_resnet18.json").read_text())
    s = o["settings"]["b_neurons_plus_last_layer"]
    summary["results"]["overhead_ratio_median"] = s["ratio_median"]
    summary["results"]["overhead_ratios"] = s["ratios"]
    summary["results"]["baseline_median_seconds"] = s["baseline_median_seconds"]
for name in ("fold_kernel", "fold_store"):
    if (out / f"{name}.json").exists():
        f = json.loads((out / f"{name}.json").read_text())
        summary["results"][name] = [
            {k: r.get(k) for k in ("epochs", "variant", "cells_per_second_median", "fraction_of_copy_bandwidth_best",
                                   "fraction_of_copy_bandwidth_median", "r_gbps_median",
                                   "fraction_of_sequential_write", "topk_fraction_of_fold") if k in r}
            for r in f["runs"]
        ]
        summary["results"][f"{name}_copy_gbps"] = f["copy_gbps"]
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
EOF
log "done; results in $OUT"
exit "$FIRST_FAIL"
