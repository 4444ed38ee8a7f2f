"""Every metric of the evaluation over its seeds: per seed, mean and spread; the top-level ``results.json`` and
``results.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from responsibility.experiments.reporting import markdown_table, write_results

__all__ = ["SUMMARY", "over_seeds", "summarize", "write_summary"]

SUMMARY = ("results.json", "results.md")
EXPLANATION_METRICS = ("topk_cardinality", "class_detection", "model_randomization", "lds")
MISLABEL_METRICS = ("recall@10%", "recall@20%", "auc")


def over_seeds(values: list[float]) -> dict[str, Any]:
    """``{"per_seed": values, "mean": ..., "std": ...}``; std is the population standard deviation (ddof 0)."""
    v = np.asarray(values, dtype=np.float64)
    return {"per_seed": [float(a) for a in v], "mean": float(v.mean()), "std": float(v.std())}


def summarize(runs: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """The seeds' ``results.json`` contents (``runs``, in seed order) gathered metric by metric."""
    first = runs[0]
    out: dict[str, Any] = {
        "experiment": first["experiment"],
        "run": first["run"],
        "command": command,
        "seeds": [r["seed"] for r in runs],
        "setup": first["setup"],
        "mislabel": {
            row["score"]: {"kind": row["kind"]}
            | {m: over_seeds([_row(r, row["score"])[m] for r in runs]) for m in MISLABEL_METRICS}
            for row in first["mislabel"]
        },
        "wall_s": {str(r["seed"]): r["wall_s"] for r in runs},
    }
    if first.get("sanity"):
        out["sanity_setup"] = first["sanity_setup"]
        out["lds_setup"] = first.get("lds_setup")
        out["explanations"] = {
            name: {
                metric: over_seeds([_explanation_metric(r, name, metric) for r in runs])
                for metric in EXPLANATION_METRICS
                if metric != "lds" or first.get("lds")
            }
            for name in first["sanity"]
        }
    return out


def _row(run: dict[str, Any], score: str) -> dict[str, Any]:
    return next(row for row in run["mislabel"] if row["score"] == score)


def _explanation_metric(run: dict[str, Any], name: str, metric: str) -> float:
    return float(run["lds"][name] if metric == "lds" else run["sanity"][name][metric])


def _cell(summary: dict[str, Any], digits: int = 3) -> str:
    per_seed = " / ".join(f"{v:.{digits}f}" for v in summary["per_seed"])
    return f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f} ({per_seed})"


def _markdown(results: dict[str, Any]) -> str:
    s = results["setup"]
    seeds = ", ".join(str(v) for v in results["seeds"])
    lines = [
        f"# {results['experiment']}: {results['run']}, seeds {seeds}",
        "",
        f"`{results['command']}`",
        "",
        f"{s['train_examples']} training examples ({s['classes']} classes), {s['flipped']} labels flipped; "
        f"{s['model']}, {s['optimizer']} lr {s['lr']}, batch {s['batch_size']}, {s['epochs']} epochs "
        f"({s['steps']} steps), attribution `{s['attribution']}`. The seed draws the training subset, the flips, "
        "the initial weights and the shuffling. Each cell: mean ± standard deviation over the seeds (population, "
        "ddof 0), then the value of each seed in order. Per-seed tables: `seed<S>/results.md`.",
    ]
    if results.get("explanations"):
        setup, lds = results["sanity_setup"], results.get("lds_setup")
        lines += [
            "",
            f"## Explanations of {setup['n_test']} test inputs (k = {setup['k']})",
            "",
            "Targets: the trained model's predicted class for every method and for both models. Top-k cardinality: "
            "distinct ids in all top-k lists / (n_test·k), higher = more input-specific. Class detection: the top-1 "
            "example's label is the target. Model randomization: mean Spearman correlation between the scores of "
            "the trained model and of a re-initialised one explaining the SAME targets (quanda's protocol, Adebayo "
            "et al.'s sense), lower is better."
            + (
                f" LDS: {lds['subsets']} models retrained on random {lds['fraction']:.0%} subsets ({lds['epochs']} "
                "epochs, same seed), Spearman over the subsets between the summed scores and the retrained "
                "model's target logit, averaged over inputs; higher is better."
                if lds
                else ""
            )
            + " Methods: "
            + "; ".join(f"`{n}` = {_method(n, o)}" for n, o in _methods(setup).items())
            + ".",
            "",
        ]
        metrics = [m for m in EXPLANATION_METRICS if m in next(iter(results["explanations"].values()))]
        lines += markdown_table(
            ["method", *(m.replace("_", " ") for m in metrics)],
            ([name, *(_cell(row[m]) for m in metrics)] for name, row in results["explanations"].items()),
        )
    lines += ["", "## Finding flipped labels", ""]
    lines += markdown_table(
        ["score", "kind", "recall@10%", "recall@20%", "AUC/N"],
        ([name, row["kind"], *(_cell(row[m]) for m in MISLABEL_METRICS)] for name, row in results["mislabel"].items()),
    )
    return "\n".join(lines) + "\n"


def _methods(setup: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {**{str(n): dict(o or {}) for n, o in setup["methods"].items()}, "tracin": {}}


def _method(name: str, options: dict[str, Any]) -> str:
    if name == "tracin":
        return "last-layer TracInCP over the epoch checkpoints (weight and bias; peer)"
    if not options:
        return "`attribute()` with its defaults (contribution, sign net, cosine, all recorded layers)"
    return "`attribute(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")`"


def write_summary(out_dir: Path, results: dict[str, Any]) -> None:
    """The top-level ``results.json`` and ``results.md`` in ``out_dir``."""
    write_results(out_dir, results, _markdown)
