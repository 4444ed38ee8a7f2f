"""The paper's remaining experiments as ``scripts/paper.py`` runs them: the recorded runs they share, each
experiment in turn, ``results.json`` / ``results.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from responsibility.choices import check_choice
from responsibility.experiments.paper.evaluator import evaluator_experiment, evaluator_markdown
from responsibility.experiments.paper.explanations import ExplainSign
from responsibility.experiments.paper.interclass import interclass_experiment, interclass_markdown
from responsibility.experiments.paper.misclassified import misclassified_experiment, misclassified_markdown
from responsibility.experiments.paper.seeds import check_seeds, seeds_experiment, seeds_markdown
from responsibility.experiments.reporting import Clock, publish, write_results
from responsibility.experiments.runs import RecordedRun, accuracy, prepared_data, record_run
from responsibility.progress import bar

__all__ = ["EXPERIMENTS", "run_paper", "train_recorded"]

EXPERIMENTS = ("interclass", "misclassified", "seeds", "evaluator")
PUBLISHED_SUFFIXES = (".json", ".csv", ".md", ".png")


def train_recorded(cfg: DictConfig, datamodule: L.LightningDataModule, seed: int, run_dir: Path) -> RecordedRun:
    """Train a fresh ``cfg.model`` seeded with ``seed`` on ``datamodule``'s training set (the data do not depend
    on ``seed``), recording ``cfg.callbacks.responsibility`` into ``run_dir/responsibility.zarr``."""
    return record_run(cfg, datamodule.train_dataloader(), seed, store=Path(run_dir) / "responsibility.zarr")


def run_paper(cfg: DictConfig, command: str = "") -> dict[str, Any]:
    """Run the experiments listed in ``cfg.experiments`` (see :mod:`responsibility.experiments.paper`); returns
    ``results.json``. ``cfg.num_threads`` (if set) is torch's intra-op thread count for the duration of the call.
    """
    threads = torch.get_num_threads()
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    try:
        return _run_paper(cfg, command)
    finally:
        torch.set_num_threads(threads)


def _run_paper(cfg: DictConfig, command: str) -> dict[str, Any]:
    experiments = [str(v) for v in cfg.experiments]
    unknown = sorted(set(experiments) - set(EXPERIMENTS))
    if unknown or not experiments:
        raise ValueError(f"experiments must be a non-empty list among {EXPERIMENTS}, got {experiments}")
    for sign in cfg.explain.signs:
        check_choice("explain.signs", sign, ExplainSign)
    if "seeds" in experiments:
        check_seeds(cfg)
    clock = Clock()
    datamodule = prepared_data(cfg)
    train, test = datamodule.train_set, datamodule.test_set
    out_dir = Path(cfg.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    runs: dict[int, RecordedRun] = {}
    test_accuracy: dict[int, float] = {}

    def recorded(seed: int) -> RecordedRun:
        if seed not in runs:
            runs[seed] = train_recorded(cfg, datamodule, seed, out_dir / "runs" / f"seed{seed}")
            test_accuracy[seed] = accuracy(runs[seed].model, test.images, test.targets)
            clock.lap(f"train_seed{seed}")
        return runs[seed]

    parts: dict[str, Any] = {}
    for name in bar(experiments, desc="paper experiments", unit="experiment"):
        if name == "seeds":
            seed_runs = {int(s): recorded(int(s)) for s in cfg.seeds.seeds}
            parts["seeds"] = seeds_experiment(cfg, seed_runs, train, test, test_accuracy, out_dir)
        elif name == "interclass":
            parts["interclass"] = interclass_experiment(cfg, recorded(int(cfg.seed)), train, out_dir)
        elif name == "misclassified":
            parts["misclassified"] = misclassified_experiment(cfg, recorded(int(cfg.seed)), train, test, out_dir)
        else:
            parts["evaluator"] = evaluator_experiment(cfg, recorded(int(cfg.seed)), train, test, out_dir)
        clock.lap(name)
    any_run = next(iter(runs.values()))
    results: dict[str, Any] = {"experiment": cfg.task_name, "command": command}
    results["setup"] = {
        "data": cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule"),
        "train_examples": len(train),
        "test_examples": len(test),
        "classes": train.num_classes,
        "class_names": train.class_names,
        "data_seed": int(cfg.data.seed),
        "model": cfg.model.net._target_.rsplit(".", 1)[-1],
        "optimizer": cfg.model.optimizer,
        "lr": cfg.model.lr,
        "momentum": cfg.model.momentum,
        "batch_size": cfg.data.batch_size,
        "epochs": cfg.trainer.max_epochs,
        "steps": any_run.store.steps,
        "attribution": cfg.callbacks.responsibility.attribution,
        "tracked": {p: any_run.store.param(p).granularity for p in any_run.store.parameters},
        "explain": OmegaConf.to_container(cfg.explain, resolve=True),
        "test_accuracy": {str(s): a for s, a in sorted(test_accuracy.items())},
        "train_wall_s": {str(s): round(r.wall_s, 2) for s, r in sorted(runs.items())},
        "torch_threads": torch.get_num_threads(),
    }
    results |= parts
    results["wall_s"] = clock.totals()
    results["config"] = OmegaConf.to_container(cfg, resolve=True)
    write_results(out_dir, results, _markdown)
    if cfg.publish:
        publish(out_dir, cfg.docs_dir, sorted(p.name for p in out_dir.iterdir() if p.suffix in PUBLISHED_SUFFIXES))
    return results


SECTIONS = {
    "interclass": interclass_markdown,
    "misclassified": misclassified_markdown,
    "seeds": seeds_markdown,
    "evaluator": evaluator_markdown,
}


def _markdown(results: dict[str, Any]) -> str:
    s = results["setup"]
    lines = [
        f"# {results['experiment']}",
        "",
        f"`{results['command']}`",
        "",
        f"{s['data']}: {s['train_examples']} training examples ({s['classes']} classes, data seed {s['data_seed']}), "
        f"{s['test_examples']} test examples; {s['model']}, {s['optimizer']} lr {s['lr']} momentum {s['momentum']}, "
        f"batch {s['batch_size']}, {s['epochs']} epochs ({s['steps']} steps), attribution `{s['attribution']}`, "
        f"recorded {s['tracked']}. Test accuracy by training seed: "
        + ", ".join(f"{k}: {v:.4f}" for k, v in s["test_accuracy"].items())
        + ". Wall times (s): "
        + ", ".join(f"{k} {v}" for k, v in results["wall_s"].items())
        + ".",
    ]
    for name, section in SECTIONS.items():  # in the paper's order, whatever order they ran in
        if name in results:
            lines += section(results[name])
    return "\n".join(lines) + "\n"
