"""Paper appendix A.2: the inter-class responsibility matrix of the output layer and its diagonal dominance.

Rows are training classes, columns output units (:func:`responsibility.analysis.groups.interclass_matrix`), raw and
column-normalised, per sign; :func:`responsibility.analysis.groups.diagonal_dominance` summarises each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from responsibility.analysis.groups import diagonal_dominance, interclass_matrix
from responsibility.choices import Sign, check_choice
from responsibility.experiments.datasets import ImageClassificationDataset
from responsibility.experiments.reporting import markdown_table, write_csv
from responsibility.experiments.runs import RecordedRun
from responsibility.report.pictures import interclass_heatmap

__all__ = ["interclass_experiment", "interclass_markdown"]


def interclass_experiment(
    cfg: DictConfig, run: RecordedRun, train: ImageClassificationDataset, out_dir: Path
) -> dict[str, Any]:
    """Inter-class responsibility of ``cfg.interclass.parameter`` for each sign; ``interclass.csv`` and
    ``interclass.png`` (column-normalised matrix of the first sign)."""
    c = cfg.interclass
    name = str(c.parameter)
    if name not in run.store.parameters:
        raise ValueError(f"interclass.parameter {name} is not recorded; the store has {run.store.parameters}")
    classes = train.num_classes
    out: dict[str, Any] = {"parameter": name, "signs": {}}
    rows = []
    for sign in c.signs:
        check_choice("interclass.signs", sign, Sign)
        raw = interclass_matrix(run.store, name, sign=sign, num_classes=classes)
        share = interclass_matrix(run.store, name, sign=sign, num_classes=classes, normalize=True)
        if raw.shape != (classes, classes):
            raise ValueError(f"{name} has {raw.shape[1]} output units, not one per class ({classes})")
        out["signs"][sign] = {
            "diagonal_dominance": diagonal_dominance(raw),
            "diagonal_dominance_normalized": diagonal_dominance(share),
            "units_led_by_own_class": int((share.argmax(0) == np.arange(classes)).sum()),
            "own_class_share": np.diag(share).round(6).tolist(),
            "matrix": raw.tolist(),
            "normalized": share.tolist(),
        }
        rows += [
            {"sign": sign, "training_class": r, "output_unit": u, "r_sum": raw[r, u], "column_share": share[r, u]}
            for r in range(classes)
            for u in range(classes)
        ]
    out["classes"] = classes
    write_csv(out_dir / "interclass.csv", rows)
    first = str(c.signs[0])
    interclass_heatmap(np.asarray(out["signs"][first]["normalized"]), train.class_names, out_dir / "interclass.png")
    return out


def interclass_markdown(r: dict[str, Any]) -> list[str]:
    """The A.2 section of ``results.md``."""
    lines = [
        "",
        f"## A.2 inter-class responsibility of `{r['parameter']}`",
        "",
        "Diagonal dominance = mean diagonal / mean off-diagonal entry (1 = no class structure); "
        "normalised = each output unit's column divided by its sum.",
        "",
    ]
    return lines + markdown_table(
        [
            "sign",
            "diagonal dominance (raw)",
            "diagonal dominance (normalised)",
            "units whose largest share is their own class",
        ],
        (
            [
                sign,
                f"{v['diagonal_dominance']:.3f}",
                f"{v['diagonal_dominance_normalized']:.3f}",
                f"{v['units_led_by_own_class']} / {r['classes']}",
            ]
            for sign, v in r["signs"].items()
        ),
    )
