"""The paper's remaining experiments (A.2, A.4, A.5, Section 4) on the paper CNN trained with the callback.

    python scripts/paper.py experiment=paper_a2 publish=true          # inter-class responsibility (A.2)
    python scripts/paper.py experiment=paper_a4 publish=true          # misclassified test inputs (A.4)
    python scripts/paper.py experiment=paper_a5 publish=true          # seeds 0/1/2 (A.5)
    python scripts/paper.py experiment=paper_evaluator publish=true   # actor/evaluator (Section 4)
    python scripts/paper.py                                           # all four on one set of runs

Configs live in conf/ (conf/paper.yaml documents every option); the work is done by
responsibility.experiments.paper.run_paper.
Results go to the run directory (outputs/<task_name>/<time>/), and with publish=true also to
docs/results/<task_name>/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="paper")
def main(cfg: DictConfig) -> None:
    # Imported here so that --help and --cfg answer without loading torch and Lightning.
    from responsibility.experiments.job import command_line, run_job
    from responsibility.experiments.paper import run_paper

    # Lightning's info messages left out: the retrained models would repeat them.
    results = run_job(lambda: run_paper(cfg, command=command_line("paper.py")), quiet_lightning=True)
    print(Path(cfg.results_dir, "results.md").read_text())
    print(f"wall times (s): {results['wall_s']}; results in {cfg.results_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
