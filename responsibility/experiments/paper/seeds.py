"""Paper appendix A.5: the same data trained with several seeds; the overlap of the top-k sets that explain the same
test inputs (Jaccard, top-1 agreement) against two baselines: two random k-subsets, and the explanation of another
test input with the same prediction (what a class-wide set of hub examples alone would give)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from responsibility.evaluation import expected_random_jaccard, shuffled_jaccard, top1_agreement, topk_jaccard
from responsibility.experiments.datasets import ImageClassificationDataset
from responsibility.experiments.paper.explanations import responsible_examples
from responsibility.experiments.reporting import fraction, markdown_table, pyplot, save_figure, write_csv
from responsibility.experiments.runs import RecordedRun

__all__ = ["check_seeds", "seeds_experiment", "seeds_markdown"]


def seeds_experiment(
    cfg: DictConfig,
    runs: dict[int, RecordedRun],
    train: ImageClassificationDataset,
    test: ImageClassificationDataset,
    test_accuracy: dict[int, float],
    out_dir: Path,
) -> dict[str, Any]:
    """Overlap of the explanations of the same test inputs by models trained with different seeds on the same
    data: ``seeds_overlap.csv``, ``seeds_topk.csv``, ``seeds_overlap.png``."""
    c, e = cfg.seeds, cfg.explain
    seeds = check_seeds(cfg)
    ks = sorted({int(k) for k in c.ks})
    k_max = ks[-1]
    n_train = len(train)
    if ks[0] < 1 or k_max > n_train:
        raise ValueError(f"seeds.ks must lie in [1, {n_train}], got {ks}")
    n = len(test) if c.n_test is None else min(int(c.n_test), len(test))
    x, y = test.images[:n], test.targets[:n].numpy()
    out: dict[str, Any] = {
        "seeds": seeds,
        "n_test": n,
        "ks": ks,
        "test_accuracy": {str(s): test_accuracy[s] for s in seeds},
        "chance_jaccard": {str(k): expected_random_jaccard(n_train, k) for k in ks},
        "chance_top1_agreement": 1.0 / n_train,
        "signs": {},
    }
    rows, top_rows = [], []
    for sign in e.signs:
        pred, ids = {}, {}
        for s in seeds:
            pred[s], ids[s], _ = responsible_examples(
                runs[s].model, runs[s].store, x, k=k_max, layers=e.layers, sign=sign
            )
            top_rows += [
                {"sign": sign, "seed": s, "test_id": i, "true_label": int(y[i]), "predicted_label": int(pred[s][i])}
                | {"example_ids": ";".join(map(str, ids[s][i]))}
                for i in range(n)
            ]
        pairs = []
        for a, b in combinations(seeds, 2):
            same = pred[a] == pred[b]
            pair: dict[str, Any] = {
                "seed_a": a,
                "seed_b": b,
                "prediction_agreement": float(np.mean(same)),
                "top1_agreement": top1_agreement(ids[a], ids[b]),
            }
            for k in ks:
                jac = topk_jaccard(ids[a][:, :k], ids[b][:, :k])
                base = shuffled_jaccard(ids[a][:, :k], ids[b][:, :k], pred[a], seed=cfg.seed)
                pair[f"jaccard@{k}"] = float(jac.mean())
                pair[f"jaccard@{k}_same_prediction"] = fraction(jac[same])
                pair[f"shuffled_jaccard@{k}"] = base
                rows.append(
                    {
                        "sign": sign,
                        "seed_a": a,
                        "seed_b": b,
                        "k": k,
                        "mean_jaccard": pair[f"jaccard@{k}"],
                        "mean_jaccard_same_prediction": pair[f"jaccard@{k}_same_prediction"],
                        "shuffled_input_jaccard": base,
                        "chance_jaccard": out["chance_jaccard"][str(k)],
                        "top1_agreement": pair["top1_agreement"],
                        "prediction_agreement": pair["prediction_agreement"],
                    }
                )
            pairs.append(pair)
        mean = {key: float(np.mean([p[key] for p in pairs])) for key in pairs[0] if key not in ("seed_a", "seed_b")}
        out["signs"][sign] = {"pairs": pairs, "mean_over_pairs": mean}
    write_csv(out_dir / "seeds_overlap.csv", rows)
    write_csv(out_dir / "seeds_topk.csv", top_rows)
    _plot_seed_overlap(out_dir / "seeds_overlap.png", out, k_max)
    return out


def check_seeds(cfg: DictConfig) -> list[int]:
    """``cfg.seeds.seeds``, checked before any training: at least two distinct seeds."""
    seeds = [int(s) for s in cfg.seeds.seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds.seeds must list at least two distinct seeds, got {seeds}")
    return seeds


def _plot_seed_overlap(path: Path, seeds: dict[str, Any], k: int) -> None:
    plt = pyplot()
    signs = list(seeds["signs"])
    fig, axes = plt.subplots(1, len(signs), figsize=(4.2 * len(signs), 3.6), squeeze=False)
    for ax, sign in zip(axes[0], signs, strict=True):
        pairs = seeds["signs"][sign]["pairs"]
        names = [f"{p['seed_a']} vs {p['seed_b']}" for p in pairs]
        pos = np.arange(len(pairs))
        ax.bar(pos - 0.2, [p[f"jaccard@{k}"] for p in pairs], 0.2, label=f"Jaccard@{k}")
        ax.bar(pos, [p[f"shuffled_jaccard@{k}"] for p in pairs], 0.2, label="other input, same prediction")
        ax.bar(pos + 0.2, [p["top1_agreement"] for p in pairs], 0.2, label="top-1 agreement")
        ax.axhline(seeds["chance_jaccard"][str(k)], color="grey", ls=":", label=f"random sets (Jaccard@{k})")
        ax.set_xticks(pos, names, fontsize=7)
        top = max([p[f"jaccard@{k}"] for p in pairs] + [p["top1_agreement"] for p in pairs] + [0.04])
        ax.set(title=f"sign {sign}", ylabel="overlap", ylim=(0, min(1.0, 1.3 * top)))
        ax.legend(fontsize=6)
    save_figure(fig, path, dpi=110)


def seeds_markdown(r: dict[str, Any]) -> list[str]:
    """The A.5 section of ``results.md``."""
    ks = r["ks"]
    lines = [
        "",
        f"## A.5 seeds {r['seeds']}: overlap of the most responsible sets ({r['n_test']} test inputs)",
        "",
        "Means over the seed pairs. Jaccard@k: of the two top-k sets of the same test input; shuffled: of "
        "one seed's set for an input and the other seed's set for another input with the same prediction; "
        "random: two uniformly drawn k-subsets (exact expectation).",
        "",
    ]
    header = ["sign", "prediction agreement", "top-1 agreement"]
    header += [f"{name}@{k}" for k in ks for name in ("Jaccard", "shuffled", "random")]
    body = []
    for sign, v in r["signs"].items():
        m = v["mean_over_pairs"]
        row = [sign, f"{m['prediction_agreement']:.3f}", f"{m['top1_agreement']:.3f}"]
        for k in ks:
            row += [
                f"{m[f'jaccard@{k}']:.3f}",
                f"{m[f'shuffled_jaccard@{k}']:.3f}",
                f"{r['chance_jaccard'][str(k)]:.4f}",
            ]
        body.append(row)
    return lines + markdown_table(header, body)
