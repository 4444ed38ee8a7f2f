"""The evaluation of ``scripts/evaluate.py``: for each seed one recorded run, every ranking and explanation on it,
the metrics and that seed's outputs; then every metric over the seeds (mean, spread and per seed)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from responsibility.callbacks.margins import MarginCallback
from responsibility.experiments.evaluate.explanations import Subject, explainers, lds_scores, sanity_metrics
from responsibility.experiments.evaluate.fix_labels import fix_labels_curve, fix_labels_orders
from responsibility.experiments.evaluate.rankings import cleanlab_scores, peer_scores, responsibility_scores
from responsibility.experiments.evaluate.report import PUBLISHED, mislabel_rows, write_outputs
from responsibility.experiments.evaluate.summary import SUMMARY, summarize, write_summary
from responsibility.experiments.reporting import Clock, publish, run_setup
from responsibility.experiments.runs import checkpoint_states, predict, prepared_data, record_run
from responsibility.progress import bar

__all__ = ["evaluate", "evaluate_seed"]


def evaluate(cfg: DictConfig, command: str = "") -> dict[str, Any]:
    """Run the whole evaluation of ``cfg`` once per entry of ``cfg.seeds`` (see
    :mod:`responsibility.experiments.evaluate`); returns what the top-level ``results.json`` holds."""
    seeds = [int(s) for s in cfg.seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}")
    out_dir = Path(cfg.results_dir)
    runs = []
    for seed in bar(seeds, desc="seeds", unit="seed"):
        seed_cfg = copy.deepcopy(cfg)
        with open_dict(seed_cfg):
            seed_cfg.seed = seed  # read by the data (the subset and the flips), training and the retrainings
        runs.append(evaluate_seed(seed_cfg, out_dir / f"seed{seed}", command))
    results = summarize(runs, command)
    results["config"] = _container(cfg)
    write_summary(out_dir, results)
    if cfg.publish:
        publish(out_dir, cfg.docs_dir, SUMMARY)
        for seed in seeds:
            publish(out_dir / f"seed{seed}", Path(cfg.docs_dir) / f"seed{seed}", PUBLISHED)
    return results


def evaluate_seed(cfg: DictConfig, out_dir: Path, command: str = "") -> dict[str, Any]:
    """The evaluation of one seed (``cfg.seed``), its outputs written into ``out_dir``; returns what its
    ``results.json`` holds."""
    clock = Clock()
    dm = prepared_data(cfg)
    train, test = dm.train_set, dm.test_set
    flipped = train.flipped_ids
    if len(flipped) == 0:
        raise ValueError("the training set has no flipped labels (data.label_noise = 0): nothing to detect")
    x, y, y_clean = train.images, train.targets, train.clean_targets
    out_dir.mkdir(parents=True, exist_ok=True)

    margins_cb = MarginCallback(train, keep_checkpoints=True)
    run = record_run(cfg, dm.train_dataloader(), cfg.seed, callbacks=[margins_cb])
    model, store = run.model, run.store
    clock.lap("train_and_record")

    rankings: dict[str, tuple[str, np.ndarray]] = {
        name: ("responsibility", s) for name, s in responsibility_scores(store, cfg.scores).items()
    }
    clock.lap("responsibility_scores")
    states = checkpoint_states(cfg, margins_cb.checkpoints, x) if cfg.peers.tracin else []
    rankings |= {name: ("peer", s) for name, s in peer_scores(cfg, model, margins_cb, states, x, y).items()}
    clock.lap("peers")
    if cfg.peers.cleanlab.folds:
        rankings["cleanlab_label_quality"] = ("peer", cleanlab_scores(cfg, x, y))
        clock.lap("cleanlab_cross_validation")
    rankings["random"] = ("baseline", np.random.default_rng([cfg.seed, 3]).random(len(x)))
    mislabel = mislabel_rows(rankings, flipped)

    results: dict[str, Any] = {
        "experiment": cfg.task_name,
        "run": cfg.run_name,
        "seed": cfg.seed,
        "command": command,
        "setup": {
            "train_examples": len(x),
            "classes": cfg.data.num_classes,
            "flipped": len(flipped),
            **run_setup(cfg, store),
        },
        "mislabel": mislabel,
        "flipped_ids": flipped.tolist(),
    }
    if cfg.sanity.n_test:
        x_test = test.images[: cfg.sanity.n_test]
        targets = predict(model, x_test).argmax(1).numpy()  # every method, both models, explain these
        L.seed_everything(cfg.seed + 1, verbose=False)
        random_model = instantiate(cfg.model)  # re-initialised: same architecture, untrained weights
        random_ckpt = [({k: v.detach().clone() for k, v in random_model.state_dict().items()}, 1.0)]
        results["sanity"], attributions = sanity_metrics(
            explainers(cfg, store, x, y, x_test),
            Subject(model, margins_cb.checkpoints),
            Subject(random_model, random_ckpt),
            targets,
            y,
            cfg.sanity.k,
        )
        results["sanity_setup"] = {**_container(cfg.sanity), "n_test": len(x_test)}
        clock.lap("sanity")
        if cfg.lds.subsets:
            results["lds_setup"] = _container(cfg.lds)
            results["lds"] = lds_scores(cfg, x, y, x_test, targets, attributions)
            clock.lap("lds")
    if cfg.fix_labels.steps:
        orders = fix_labels_orders(mislabel, rankings, cfg.seed)
        results["fix_labels"] = fix_labels_curve(cfg, x, y, y_clean, test.images, test.targets, orders)
        clock.lap("fix_labels")
    results["wall_s"] = clock.totals()
    results["config"] = _container(cfg)

    write_outputs(out_dir, results, rankings)
    return results


def _container(cfg: DictConfig) -> dict[str, Any]:
    """A config section as plain Python values, interpolations resolved."""
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
