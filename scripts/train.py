"""Train a classifier while recording responsibility.

    python scripts/train.py                                   # the main job: Fashion-MNIST subset, paper CNN
    python scripts/train.py experiment=digits_quick
    python scripts/train.py -m seed=0,1,2 experiment=digits_quick
    python scripts/train.py experiment=fashion_tshirt_shirt callbacks.responsibility.attribution=per_example

Configs live in conf/ (see conf/train.yaml); the work is done by responsibility.experiments.train.train.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # Imported here so that --help and --cfg answer without loading torch and Lightning.
    from responsibility.experiments.job import run_job
    from responsibility.experiments.train import train

    run_job(lambda: train(cfg))


if __name__ == "__main__":
    main()
