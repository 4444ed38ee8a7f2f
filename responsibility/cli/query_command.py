"""The ``query`` command: explain test inputs of a Hydra run with their most responsible training examples."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from responsibility.choices import ACTIVATION_RULES, QUERY_METHODS, QUERY_NORMALIZE, QUERY_SIGNS
from responsibility.cli.run_dir import (
    Inputs,
    build_model,
    check_checkpoint_store,
    class_names,
    data_module,
    default_store,
    load_checkpoint,
    load_inputs,
    parse_target,
    run_config,
)
from responsibility.store import ResponsibilityStore

_MEANING = {
    "contribution": "score = how much the example's updates raised the input's target score ({sign}; "
    "normalize={normalize}); negative = lowered it",
    "most_activated": "score = R ({sign}) of the input's most activated weight(s) (the paper's rule)",
}


# Above this much unfolded R a query says that forming it from the journal is slow.
UNFOLDED_NOTE_BYTES = 256 * 2**20


def register(sub: Any) -> None:
    """Add the ``query`` command to the ``responsibility`` parser's subcommands."""
    p = sub.add_parser(
        "query",
        help="most responsible training examples for test inputs",
        description="Rebuild the model from a Hydra run (config + Lightning checkpoint) and explain inputs.",
    )
    p.add_argument("--run-dir", help="Hydra run directory: gives the config, last.ckpt and the store path")
    p.add_argument("--config", help="the run's composed config (.hydra/config.yaml), instead of --run-dir")
    p.add_argument("--checkpoint", help="Lightning checkpoint (default <run-dir>/checkpoints/last.ckpt)")
    p.add_argument("--store", help="responsibility store (default: the run's callback store path)")
    p.add_argument(
        "--inputs",
        required=True,
        help="test:I,J,... (positions in the run's test set, a seeded subset of the test split; the original "
        "index is printed as 'source'), or FILE.npy / FILE.pt: a batch; integer arrays are raw pixels and get the "
        "run's scaling, float arrays must be scaled already",
    )
    p.add_argument("-k", type=int, default=5, help="training examples per input (default 5)")
    p.add_argument("--method", choices=QUERY_METHODS, default="contribution", help="how inputs are explained")
    p.add_argument("--layers", action="append", help="parameter names or glob patterns (repeatable or comma list)")
    p.add_argument(
        "--target", default="predicted", help="predicted (default), a class index, one per input (I,J,...), or any"
    )
    p.add_argument("--sign", choices=QUERY_SIGNS, default="net", help="net = R_pos - R_neg (default), abs, pos, neg")
    p.add_argument("--normalize", choices=QUERY_NORMALIZE, default="cosine", help="contribution: layer weighting")
    p.add_argument("--top-weights", type=int, default=None, help="most_activated: combine this many weights")
    p.add_argument("--outliers", type=float, default=None, help="most_activated: robust z-score threshold")
    p.add_argument("--rule", choices=ACTIVATION_RULES, default="sum", help="most_activated: conv activation rule")
    p.add_argument("--json", metavar="OUT", help="also write the explanation as JSON to OUT")
    p.add_argument("--csv", metavar="OUT", help="also write one row per (input, rank) as CSV to OUT")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report (with images) to OUT")
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    from responsibility.query import Explainer, ExplainOptions

    if not args.run_dir and not args.config:
        raise ValueError("pass --run-dir (a Hydra run directory) or --config (its .hydra/config.yaml)")
    cfg = run_config(args)
    checkpoint = args.checkpoint or (str(Path(args.run_dir) / "checkpoints" / "last.ckpt") if args.run_dir else None)
    store_path = args.store or default_store(cfg)
    if checkpoint is None:
        raise ValueError("pass --checkpoint (no run directory to default it from)")
    if store_path is None:
        raise ValueError("pass --store (the config has no responsibility callback store)")
    options = ExplainOptions(
        k=args.k,
        method=args.method,
        layers=tuple(x for part in args.layers for x in part.split(",") if x) if args.layers else None,
        targets=parse_target(args.target),
        sign=args.sign,
        normalize=args.normalize,
        top_weights=args.top_weights,
        outliers=args.outliers,
        rule=args.rule,
    )
    store = ResponsibilityStore.open(store_path)
    ckpt = load_checkpoint(checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_checkpoint_store(ckpt, checkpoint, str(store_path), store.steps)
    for w in caught:
        print(f"responsibility query: warning: {w.message}", file=sys.stderr)
    model = build_model(cfg, ckpt, checkpoint)
    dm = data_module(cfg)
    inputs = load_inputs(args.inputs, cfg, dm)
    if len(inputs.x) > 1000:
        print(f"explaining {len(inputs.x)} inputs...", file=sys.stderr)
    explainer = Explainer(model, store)
    plan = store.fold_plan(explainer.resolve_layers(options.layers, options.method)[0])  # what the query reads
    if plan.r_bytes > UNFOLDED_NOTE_BYTES:
        # Lazy reads form R from the journal on every query: say so before a long wait, with the one-off fix.
        print(
            f"responsibility query: note: R of {len(plan.parameters)} parameter(s) is not folded "
            f"({plan.r_bytes / 2**30:.1f} GiB); this query forms it from the journal, which can take minutes. "
            f"Fold once (about {plan.estimated_seconds / 60:.0f} min): responsibility fold {store_path}",
            file=sys.stderr,
        )
    ex = explainer.explain(inputs.x, options)
    for b, item in enumerate(ex):
        item.source = None if inputs.sources is None else int(inputs.sources[b])
        item.true_label = None if inputs.labels is None else int(inputs.labels[b])
    names = class_names(dm, args)
    if args.json:
        ex.to_json(args.json)
    if args.csv:
        ex.to_csv(args.csv)
    if args.html:
        from responsibility.report import write_html

        train_images = None
        if getattr(dm, "train_set", None) is None and hasattr(dm, "setup"):
            dm.setup("fit")
        train_images = getattr(getattr(dm, "train_set", None), "images", None)
        write_html(ex, args.html, class_names=names, store=str(store_path), inputs=inputs.x, train_images=train_images)
    _print_table(ex, names, inputs, options)
    return 0


def _print_table(ex: Any, names: Sequence[str] | None, inputs: Inputs, options: Any) -> None:
    """One row per (input, rank) on stdout, the input's own columns on its first row; what the inputs and scores
    are on stderr."""

    def cls(value: int | None) -> str:
        if value is None:
            return "-"
        if names is not None and 0 <= value < len(names):
            return f"{value}:{names[value][:12]}"
        return str(value)

    print(f"inputs: {inputs.description}", file=sys.stderr)
    print(_MEANING[options.method].format(sign=options.sign, normalize=options.normalize), file=sys.stderr)
    print(
        f"{'input':>5} {'source':>6} {'true':>14} {'pred':>14} {'target':>14} {'rank':>4} {'example':>8} "
        f"{'label':>14} {'score':>12}" + ("  weights" if options.method == "most_activated" else "")
    )
    blank = " " * (5 + 1 + 6 + 3 * (1 + 14))
    quiet = []
    for item in ex:
        name = item.input if inputs.positions is None else inputs.positions[item.input]
        shown = [(r, e, s) for r, (e, s) in enumerate(zip(item.example_ids, item.scores, strict=True), 1) if s != 0]
        if not shown:
            quiet.append(name)
            continue
        source = "-" if item.source is None else str(item.source)
        about = f"{name:>5} {source:>6} {cls(item.true_label):>14} {cls(item.predicted):>14} {cls(item.target):>14}"
        weights = ";".join(f"{n}[{','.join(map(str, i))}]={a:.4g}" for n, i, a in item.weights)
        for rank, example, score in shown:
            label = cls(None if item.labels is None else int(item.labels[rank - 1]))
            row = f"{about if rank == 1 else blank} {rank:>4} {int(example):>8} {label:>14} {score:>12.6g}"
            print(row + (f"  {weights}" if weights and rank == 1 else ""))
    for name in quiet:
        print(f"input {name}: no training example changed the weights that explain it (every score is 0)")
    if ex.unsupported:
        print(f"(not explained by method {options.method}, skipped: {', '.join(ex.unsupported)})")
