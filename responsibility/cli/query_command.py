"""The ``query`` command: explain test inputs of a Hydra run with its most responsible training examples."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from responsibility.choices import ACTIVATION_RULES, SIGNS
from responsibility.cli.run_dir import (
    build_model,
    class_names,
    default_store,
    load_inputs,
    parse_target,
    run_config,
)
from responsibility.store import ResponsibilityStore


def register(sub: Any) -> None:
    """Add the ``query`` command to the ``responsibility`` parser's subcommands."""
    p = sub.add_parser(
        "query",
        help="most responsible training examples for test inputs, via their most activated weights",
        description="Rebuild the model from a Hydra run (config + Lightning checkpoint) and explain inputs.",
    )
    p.add_argument("--run-dir", help="Hydra run directory: gives the config, last.ckpt and the store path")
    p.add_argument("--config", help="the run's composed config (.hydra/config.yaml), instead of --run-dir")
    p.add_argument("--checkpoint", help="Lightning checkpoint (default <run-dir>/checkpoints/last.ckpt)")
    p.add_argument("--store", help="responsibility store (default: the run's callback store path)")
    p.add_argument("--inputs", required=True, help="FILE.npy, FILE.pt (a batch tensor) or test:I,J,... (test set)")
    p.add_argument("-k", type=int, default=5, help="training examples per input (default 5)")
    p.add_argument("--layers", action="append", help="parameter names or glob patterns (repeatable or comma list)")
    p.add_argument("--target", default="predicted", help="predicted (default), none, or a class index")
    p.add_argument("--top-weights", type=int, default=None, help="combine this many most activated weights")
    p.add_argument("--outliers", type=float, default=None, help="robust z-score threshold for activated weights")
    p.add_argument("--sign", choices=SIGNS, default="abs", help="which R to rank by")
    p.add_argument("--rule", choices=ACTIVATION_RULES, default="sum", help="conv activation over positions")
    p.add_argument("--json", metavar="OUT", help="also write the explanation as JSON to OUT")
    p.add_argument("--csv", metavar="OUT", help="also write one row per (input, rank) as CSV to OUT")
    p.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report to OUT")
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    from responsibility.query import explain

    if not args.run_dir and not args.config:
        raise ValueError("pass --run-dir (a Hydra run directory) or --config (its .hydra/config.yaml)")
    cfg = run_config(args)
    checkpoint = args.checkpoint or (str(Path(args.run_dir) / "checkpoints" / "last.ckpt") if args.run_dir else None)
    store_path = args.store or default_store(cfg)
    if checkpoint is None:
        raise ValueError("pass --checkpoint (no run directory to default it from)")
    if store_path is None:
        raise ValueError("pass --store (the config has no responsibility callback store)")
    store = ResponsibilityStore.open(store_path)
    model = build_model(cfg, checkpoint)
    inputs = load_inputs(args.inputs, cfg)
    if len(inputs) > 1000:
        print(f"explaining {len(inputs)} inputs...", file=sys.stderr)
    layers = [x for part in args.layers for x in part.split(",") if x] if args.layers else None
    ex = explain(
        model,
        store,
        inputs,
        k=args.k,
        layers=layers,
        target=parse_target(args.target),
        top_weights=args.top_weights,
        sign=args.sign,
        outliers=args.outliers,
        rule=args.rule,
    )
    if args.json:
        ex.to_json(args.json)
    if args.csv:
        ex.to_csv(args.csv)
    if args.html:
        from responsibility.report import write_html

        names = class_names(cfg, args)
        write_html(ex, args.html, class_names=names, store=str(store_path))
    print(f"{'input':>5} {'pred':>4} {'rank':>4} {'example':>8} {'label':>6} {'score':>12}  weights")
    for r in ex.to_records():
        label = "-" if r["label"] is None else str(r["label"])
        weights = r["weights"] if r["rank"] == 1 else ""
        head = f"{r['input']:>5} {r['predicted']:>4} {r['rank']:>4} {r['example']:>8} {label:>6}"
        print(f"{head} {r['score']:>12.6g}  {weights}")
    if ex.unsupported:
        print(f"(no activation rule, skipped: {', '.join(ex.unsupported)})")
    return 0
