"""Run a benchmark through Hydra: the same scripts as ``python scripts/bench_*.py``, configured by conf/bench/.

    python scripts/bench.py bench=overhead bench.args.repeats=5
    python scripts/bench.py bench=fold 'bench.args.epochs=[1,3]'
    python scripts/bench.py -m bench=overhead bench.args.model=paper_cnn,lenet5,mlp10m

The benchmarks are plain argparse scripts beside this one; a config group entry (``conf/bench/<name>.yaml``:
``script`` and ``args``) becomes their command line, so one benchmark runs the same way by hand and through Hydra,
sweeps included. An ``args`` value of ``null`` leaves the script's own default in place. Results (JSON) go to the run
directory (``bench.args.out``, default ``<run dir>/results.json``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

SCRIPTS = Path(__file__).resolve().parent


def bench_argv(args: Mapping[str, Any]) -> list[str]:
    """argparse command line for ``args``: ``{"batch_size": 64, "fold": True, "epochs": [1, 3]}`` becomes
    ``["--batch-size", "64", "--fold", "--epochs", "1", "3"]``; ``None`` and ``False`` are left out."""
    argv: list[str] = []
    for key, value in args.items():
        if value is None or value is False:
            continue
        flag = ("-" if len(key) == 1 else "--") + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def run_benchmark(cfg: DictConfig) -> list[str]:
    """Run ``cfg.bench.script`` (a ``bench_*.py`` beside this file) with ``cfg.bench.args``; returns its argv."""
    script = SCRIPTS / f"{cfg.bench.script}.py"
    if not script.is_file():
        known = sorted(p.stem for p in SCRIPTS.glob("bench_*.py"))
        raise FileNotFoundError(f"bench.script={cfg.bench.script!r}: no {script}; known benchmarks: {known}")
    args = OmegaConf.to_container(cfg.bench.args, resolve=True) or {}
    argv = bench_argv(args)
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"python scripts/{script.name} {' '.join(argv)}", flush=True)
    module.main(argv)
    return argv


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    run_benchmark(cfg)


if __name__ == "__main__":
    main()
