"""Run a ``scripts/bench_*.py`` benchmark from a composed Hydra config (``scripts/bench.py``, ``conf/bench.yaml``).

The benchmarks are plain argparse scripts; here a config group entry (``conf/bench/<name>.yaml``: ``script`` and
``args``) becomes their command line, so one benchmark runs the same way by hand and through Hydra, sweeps included.
An ``args`` value of ``null`` leaves the script's own default in place.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["bench_argv", "run_benchmark"]

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


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
    """Run ``cfg.bench.script`` (a file of ``scripts/``) with ``cfg.bench.args``; returns the command line used."""
    script = SCRIPTS / f"{cfg.bench.script}.py"
    if not script.is_file():
        known = sorted(p.stem for p in SCRIPTS.glob("bench_*.py"))
        raise FileNotFoundError(f"bench.script={cfg.bench.script!r}: no {script}; known benchmarks: {known}")
    args = OmegaConf.to_container(cfg.bench.args, resolve=True) or {}
    argv = bench_argv(args)
    spec = importlib.util.spec_from_file_location(f"_bench_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"python scripts/{script.name} {' '.join(argv)}", flush=True)
    module.main(argv)
    return argv
