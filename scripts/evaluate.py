"""Evaluate attribution: mislabel rankings (responsibility scores and peers) and explanations of test inputs
(the default explanation, the paper's rule, last-layer TracIn: top-k cardinality, class detection, model
randomization with the same targets, LDS), on one recorded run per entry of ``seeds``, mean ± std over them.

    python scripts/evaluate.py experiment=eval_mislabel_a3                       # paper A.3, batch 32
    python scripts/evaluate.py experiment=eval_mislabel_a3 data.batch_size=1 fix_labels.batch_size=32
    python scripts/evaluate.py -m experiment=eval_mislabel_a3 data.batch_size=1,32
    python scripts/evaluate.py experiment=eval_mislabel_a3 callbacks.responsibility.attribution=per_example publish=true
    python scripts/evaluate.py experiment=eval_mislabel_full
    python scripts/evaluate.py experiment=eval_explain_a3 publish=true          # explanations, seeds 0, 1, 2
    python scripts/evaluate.py experiment=eval_explain_fashion10k publish=true  # 10,000 images, 10 classes

Configs live in conf/ (conf/evaluate.yaml documents every option); the work is done by
responsibility.experiments.evaluate. Results go to the run directory (outputs/<experiment>/<time>/: the summary
over the seeds, and seed<S>/ per seed), and with publish=true also to docs/results/<experiment>/<run_name>/.
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
    seeds = results["seeds"]
    print(f"\n{results['experiment']} {results['run']}, seeds {seeds}: mean ± std over the seeds")
    for name, row in results.get("explanations", {}).items():
        print(f"{name:<36} " + "  ".join(f"{m} {v['mean']:.3f} ± {v['std']:.3f}" for m, v in row.items()))
    print(f"\n{'score':<36} {'kind':<15} {'recall@10%':>10} {'recall@20%':>10} {'auc':>6}")
    for name, r in results["mislabel"].items():
        cells = " ".join(f"{r[m]['mean']:>10.2f}" for m in ("recall@10%", "recall@20%"))
        print(f"{name:<36} {r['kind']:<15} {cells} {r['auc']['mean']:>6.3f}")
    print(f"wall times (s): {results['wall_s']}; results in {cfg.results_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
