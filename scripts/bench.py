"""Run a benchmark through Hydra: the same scripts as ``python scripts/bench_*.py``, configured by conf/bench/.

    python scripts/bench.py bench=overhead bench.args.repeats=5
    python scripts/bench.py bench=fold 'bench.args.epochs=[1,3]'
    python scripts/bench.py -m bench=overhead bench.args.model=paper_cnn,lenet5,mlp10m

Results (JSON) go to the run directory (``bench.args.out``, default ``<run dir>/results.json``).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    # Imported here so that --help and --cfg answer without loading torch.
    from responsibility.experiments.bench import run_benchmark

    run_benchmark(cfg)


if __name__ == "__main__":
    main()
