"""The spurious-correlation (shortcut) test: plant a bright corner patch on one class, train, explain patched test
images of the other classes, and score whether the explanations name the patched training images.

    python scripts/shortcut.py experiment=shortcut_fashion                 # uniform attribution
    python scripts/shortcut.py experiment=shortcut_fashion_per_example     # per-example attribution
    python scripts/shortcut.py experiment=shortcut_fashion shortcut.target_class=7 shortcut.other_fraction=0
    python scripts/shortcut.py experiment=shortcut_fashion publish=true    # also to docs/results/shortcut/<run>/

Configs live in conf/ (conf/shortcut.yaml documents every option); the work is done by
responsibility.experiments.shortcut.run_shortcut. Results go to the run directory (outputs/shortcut/<time>/).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="shortcut")
def main(cfg: DictConfig) -> None:
    # Imported here so that --help and --cfg answer without loading torch and Lightning.
    from responsibility.experiments.job import command_line, run_job
    from responsibility.experiments.shortcut import run_shortcut

    # Lightning's info messages left out: the retrained models would repeat them.
    results = run_job(lambda: run_shortcut(cfg, command=command_line("shortcut.py")), quiet_lightning=True)
    t = results["test"]
    print(f"\n{results['run']}: shortcut class {results['setup']['shortcut_class_name']!r}")
    print(
        f"clean accuracy {t['accuracy_clean']:.3f}; other-class test images predicted as the shortcut class: "
        f"{t['shortcut_rate_clean']:.3f} clean, {t['shortcut_rate_patched']:.3f} patched "
        f"(flip rate {t['flip_rate']:.3f})"
    )
    names = [n for n in results["metric_names"] if not n.startswith("top")]  # the top-k shares: results.md
    print(f"{'subset':<8} {'method':<40} " + " ".join(f"{n:>20}" for n in names))
    for r in results["summary"]:
        values = " ".join(f"{'-' if r[n] is None else format(r[n], '.3f'):>20}" for n in names)
        print(f"{r['subset']:<8} {r['method']:<40} {values}")
    print(f"base rates: {results['base_rates']}; wall times (s): {results['wall_s']}", file=sys.stderr)
    print(f"results in {cfg.results_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
