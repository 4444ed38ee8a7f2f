"""scripts/bench.py: config groups become the benchmark scripts' command lines; a small benchmark runs end to end."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
from helpers import CONF, SCRIPTS
from hydra import compose, initialize_config_dir

CONF = str(CONF)


def _load(script: str, name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_bench = _load("bench.py", "_bench_runner")  # the runner lives beside the benchmarks it runs
bench_argv, run_benchmark = _bench.bench_argv, _bench.run_benchmark


def test_bench_argv_matches_argparse_conventions():
    argv = bench_argv({"batch_size": 64, "fold": True, "skip_store": False, "epochs": [1, 3], "out": None, "k": 5})
    assert argv == ["--batch-size", "64", "--fold", "--epochs", "1", "3", "-k", "5"]
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--fold", action="store_true")
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument("--epochs", type=int, nargs="+")
    parser.add_argument("-k", type=int)
    ns = parser.parse_args(argv)
    assert (ns.batch_size, ns.fold, ns.skip_store, ns.epochs, ns.k) == (64, True, False, [1, 3], 5)


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("name", ["overhead", "fold", "store", "scale", "query", "fit_end"])
def test_every_bench_config_names_options_its_script_accepts(name, monkeypatch):
    """Each conf/bench entry's args are options of its script's own parser: no stale or misspelt option."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="bench", overrides=[f"bench={name}", "paths.output_dir=out"])
    module = _load(f"{cfg.bench.script}.py", f"_probe_{name}")

    def stop(self, args=None, namespace=None):
        raise _Parsed(set(self._option_string_actions))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(_Parsed) as parsed:
        module.main([])
    flags = {bench_argv({key: True})[0] for key in cfg.bench.args}
    assert flags <= parsed.value.args[0], flags - parsed.value.args[0]


def test_scale_benchmark_runs_through_hydra(tmp_path):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(
            config_name="bench",
            overrides=[
                "bench=scale",
                f"paths.output_dir={tmp_path}",
                "bench.args.examples=300",
                "bench.args.features=12",
                "bench.args.units=6",
                "bench.args.classes=3",
            ],
        )
    argv = run_benchmark(cfg)
    assert argv[:2] == ["--examples", "300"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["r_cells"] >= 300 * 6
