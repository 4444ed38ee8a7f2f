"""Evaluate attribution for finding mislabelled data: responsibility scores and peers on one recorded run.

    python scripts/evaluate.py experiment=eval_mislabel_a3                       # paper A.3, batch 32
    python scripts/evaluate.py experiment=eval_mislabel_a3 data.batch_size=1 fix_labels.batch_size=32
    python scripts/evaluate.py -m experiment=eval_mislabel_a3 data.batch_size=1,32
    python scripts/evaluate.py experiment=eval_mislabel_a3 callbacks.responsibility.attribution=per_example publish=true
    python scripts/evaluate.py experiment=eval_mislabel_full

Configs live in conf/ (conf/evaluate.yaml documents every option); the work is done by
responsibility.experiments.evaluate. Results go to the run directory (outputs/<experiment>/<time>/), and with
publish=true also to docs/results/<experiment>/<run_name>/.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    # Imported here so that --help and --cfg answer without loading torch and Lightning.
    from responsibility.experiments.evaluate import evaluate
    from responsibility.experiments.job import command_line, run_job

    # Lightning's info messages left out: the retrained models would repeat them.
    results = run_job(lambda: evaluate(cfg, command=command_line("evaluate.py")), quiet_lightning=True)
    print(f"\n{results['experiment']} {results['run']}: {results['setup']['flipped']} flipped labels")
    print(f"{'score':<36} {'kind':<15} {'recall@10%':>10} {'recall@20%':>10} {'auc':>6}")
    for r in results["mislabel"]:
        print(f"{r['score']:<36} {r['kind']:<15} {r['recall@10%']:>10.2f} {r['recall@20%']:>10.2f} {r['auc']:>6.3f}")
    print(f"wall times (s): {results['wall_s']}; results in {cfg.results_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
