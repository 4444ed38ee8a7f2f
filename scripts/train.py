"""Train a classifier while recording responsibility.

    python scripts/train.py experiment=digits_quick
    python scripts/train.py -m seed=0,1,2 experiment=digits_quick
    python scripts/train.py experiment=fashion_tshirt_shirt callbacks=none

Configs live in conf/ (see conf/train.yaml); the work is done by responsibility.experiments.pipeline.train.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # Imported here so that --help and --cfg answer without loading torch and Lightning.
    from responsibility.experiments.pipeline import train

    train(cfg)


if __name__ == "__main__":
    main()
