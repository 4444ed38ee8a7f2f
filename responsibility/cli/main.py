"""``responsibility`` command line: inspect, fold and query stores offline (no Trainer needed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from responsibility.choices import ACTIVATION_RULES, SIGNS
from responsibility.errors import ResponsibilityError
from responsibility.store import ResponsibilityStore


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def cmd_inspect(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(args.store)
    info = store.summary()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store        {info['path']}")
    print(f"examples     {info['num_examples']}   labels: {'yes' if info['labels'] else 'no'}")
    print(f"steps        {info['steps']} optimizer steps, {info['ids']} example visits")
    print(f"settings     batch_share={info['batch_share']} attribution={info['attribution']}")
    print(f"{'parameter':<32} {'shape':<16} {'granularity':<11} {'columns':>9} {'folded':>7} {'R size':>10}")
    for p in info["parameters"]:
        shape = "x".join(map(str, p["shape"])) or "scalar"
        folded = f"{p['folded_steps']}/{info['steps']}"
        print(
            f"{p['name']:<32} {shape:<16} {p['granularity']:<11} {p['columns']:>9} {folded:>7} "
            f"{_format_bytes(p['r_bytes']):>10}"
        )
    return 0


def cmd_fold(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(args.store, mode="r+")
    report = store.fold(args.param or None, budget_bytes=int(args.budget_mb * 2**20))
    print(
        f"folded {len(report.parameters)} parameter(s) over {report.steps} steps: {report.cells:.3g} cells "
        f"in {report.seconds:.2f} s ({report.cells_per_second / 1e9:.3f} Gcells/s)"
    )
    return 0


def _parse_index(text: str, shape: tuple[int, ...]) -> int:
    """``"3,4"`` (a multi-index) or ``"27"`` (a flat index) -> flat index."""
    parts = [int(x) for x in text.split(",")]
    if len(parts) == 1:
        flat = parts[0]
    else:
        if len(parts) != len(shape):
            raise ValueError(f"index {text!r} has {len(parts)} dims; the parameter's R has shape {shape}")
        if any(not 0 <= i < n for i, n in zip(parts, shape, strict=True)):
            raise ValueError(f"index {text!r} is outside the parameter's R shape {shape}")
        flat = int(np.ravel_multi_index(parts, shape))
    total = int(np.prod(shape))
    if not 0 <= flat < total:
        raise ValueError(f"index {text!r} is outside a parameter of {total} columns")
    return flat


def cmd_top(args: argparse.Namespace) -> int:
    store = ResponsibilityStore.open(args.store)
    p = store.param(args.param)
    ids, vals = store.most_responsible(args.param, k=args.k, sign=args.sign)
    ids, vals = ids.reshape(args.k, -1), vals.reshape(args.k, -1)
    labels = store.labels
    flat = [_parse_index(w, p.r_shape) for w in args.weights] if args.weights else list(range(min(p.units, 5)))
    rows = []
    for f in flat:
        index = tuple(int(i) for i in np.unravel_index(f, p.r_shape))
        for rank in range(args.k):
            ex = int(ids[rank, f])
            rows.append(
                {
                    "parameter": args.param,
                    "index": list(index),
                    "rank": rank + 1,
                    "example": ex,
                    "label": None if labels is None else int(labels[ex]),
                    "value": float(vals[rank, f]),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'weight':<16} {'rank':>4} {'example':>8} {'label':>6} {args.sign + ' R':>14}")
    for r in rows:
        label = "-" if r["label"] is None else str(r["label"])
        print(f"{str(tuple(r['index'])):<16} {r['rank']:>4} {r['example']:>8} {label:>6} {r['value']:>14.6g}")
    return 0


# ---------------------------------------------------------------------------------------------------- query
def _run_config(args: argparse.Namespace) -> Any:
    """The run's composed Hydra config, with ``paths.output_dir`` pointing at the run directory."""
    from omegaconf import OmegaConf

    if args.run_dir:
        path = Path(args.run_dir) / ".hydra" / "config.yaml"
        if not path.exists():
            raise FileNotFoundError(f"{args.run_dir} is not a Hydra run directory (no .hydra/config.yaml)")
    else:
        path = Path(args.config)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
    cfg = OmegaConf.load(path)
    if "model" not in cfg:
        raise ValueError(f"{path} has no 'model' section; pass the run's .hydra/config.yaml")
    # ${hydra:runtime.output_dir} only resolves inside a Hydra app: the run directory is what it was.
    run_dir = Path(args.run_dir) if args.run_dir else path.parent.parent
    OmegaConf.update(cfg, "paths.output_dir", str(run_dir), force_add=True)
    return cfg


def _default_store(cfg: Any) -> str | None:
    entry = (cfg.get("callbacks") or {}).get("responsibility")
    return str(entry.store) if entry and "store" in entry else None


def _build_model(cfg: Any, checkpoint: str) -> Any:
    import torch
    from hydra.utils import instantiate

    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    model = instantiate(cfg.model)
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean the same to the user
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(f"cannot read checkpoint {checkpoint}: {type(exc).__name__}: {first}") from exc
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{checkpoint} is not a Lightning checkpoint (no state_dict)")
    own = model.state_dict()
    problems = [f"{k} missing" for k in own if k not in state]
    problems += [f"{k} unexpected" for k in state if k not in own]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if problems:
        raise ValueError(
            f"checkpoint {checkpoint} does not fit the configured model: "
            + "; ".join(problems[:4])
            + ("; ..." if len(problems) > 4 else "")
        )
    model.load_state_dict(state)
    return model.eval()


def _load_inputs(text: str, cfg: Any) -> Any:
    """``FILE.npy`` / ``FILE.pt`` (a batch tensor), or ``test:0,5,9`` (test-set images of the run's data)."""
    import torch

    if text.startswith("test:"):
        try:
            idx = [int(i) for i in text[len("test:") :].split(",") if i.strip()]
        except ValueError as exc:
            raise ValueError(f"--inputs {text!r}: expected test:I,J,... with integer indices") from exc
        if not idx:
            raise ValueError("--inputs test: lists no index")
        from hydra.utils import instantiate

        data = instantiate(cfg.data)
        data.setup("fit")
        n = len(data.test_set)
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise IndexError(f"test indices {bad} outside the test set of {n} images")
        return data.test_set.images[idx]
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"inputs file {path} does not exist")
    if path.suffix == ".npy":
        x = torch.from_numpy(np.load(path, allow_pickle=False))
    elif path.suffix == ".pt":
        try:
            x = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # e.g. a pickled object that weights_only refuses to build
            raise ValueError(f"cannot read inputs {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{path} must hold one tensor (a batch of inputs), got {type(x).__name__}")
    else:
        raise ValueError(f"--inputs must be a .npy or .pt file or test:I,J,..., got {text!r}")
    return x.float()


def _parse_target(text: str) -> str | int | None:
    if text == "predicted":
        return text
    if text == "none":
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise ValueError(f"--target must be 'predicted', 'none' or a class index, got {text!r}") from exc


def _class_names(cfg: Any, args: argparse.Namespace) -> list[str] | None:
    """Class names saved by the training run beside its store (class_names.json), if any."""
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is None or not (run_dir / "class_names.json").is_file():
        return None
    names = json.loads((run_dir / "class_names.json").read_text())
    return [str(n) for n in names] if isinstance(names, list) else None


def cmd_query(args: argparse.Namespace) -> int:
    from responsibility.query import explain

    if not args.run_dir and not args.config:
        raise ValueError("pass --run-dir (a Hydra run directory) or --config (its .hydra/config.yaml)")
    cfg = _run_config(args)
    checkpoint = args.checkpoint or (str(Path(args.run_dir) / "checkpoints" / "last.ckpt") if args.run_dir else None)
    store_path = args.store or _default_store(cfg)
    if checkpoint is None:
        raise ValueError("pass --checkpoint (no run directory to default it from)")
    if store_path is None:
        raise ValueError("pass --store (the config has no responsibility callback store)")
    store = ResponsibilityStore.open(store_path)
    model = _build_model(cfg, checkpoint)
    inputs = _load_inputs(args.inputs, cfg)
    if len(inputs) > 1000:
        print(f"explaining {len(inputs)} inputs...", file=sys.stderr)
    layers = [x for part in args.layers for x in part.split(",") if x] if args.layers else None
    ex = explain(
        model,
        store,
        inputs,
        k=args.k,
        layers=layers,
        target=_parse_target(args.target),
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

        names = _class_names(cfg, args)
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


def cmd_groups(args: argparse.Namespace) -> int:
    from responsibility.analysis.groups import class_share, group_responsibility

    store = ResponsibilityStore.open(args.store)
    p = store.param(args.param)
    blocks: list[int] = []

    def progress(done: int, total: int) -> None:
        blocks.append(done)
        if len(blocks) > 1 or done < total:  # only work that takes several blocks is worth reporting
            print(f"  {done}/{total} columns", file=sys.stderr)

    sums = group_responsibility(store, args.param, sign=args.sign, progress=progress)
    per_class = sums.reshape(sums.shape[0], -1).sum(1)
    share = class_share(store, args.param, level="layer", sign=args.sign) if per_class.sum() > 0 else per_class
    rows = [
        {"class": c, "examples": int((store.labels == c).sum()), "R": float(per_class[c]), "share": float(share[c])}
        for c in range(len(per_class))
    ]
    if args.json:
        print(json.dumps({"parameter": p.name, "sign": args.sign, "classes": rows}, indent=2))
        return 0
    print(f"{p.name}: R ({args.sign}) summed over each class's training examples and all {p.units} columns")
    print(f"{'class':>5} {'examples':>8} {'R':>14} {'share':>7}")
    for r in rows:
        print(f"{r['class']:>5} {r['examples']:>8} {r['R']:>14.6g} {r['share']:>7.1%}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="responsibility",
        description="Inspect, fold and query responsibility stores recorded by ResponsibilityCallback.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="show what a store recorded: examples, steps, parameters, sizes")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("fold", help="fold the journal into R and build the top-k index (out of core)")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--param", action="append", help="fold only this parameter (repeatable); default all")
    p.add_argument("--budget-mb", type=float, default=1024, help="memory budget of the fold (default 1024)")
    p.set_defaults(func=cmd_fold)

    p = sub.add_parser("top", help="most responsible training examples of given weights or units")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--param", required=True, help="parameter name, e.g. fc2.weight")
    p.add_argument("--weights", nargs="*", help="weights as multi-indices '3,17' or flat indices (default: first 5)")
    p.add_argument("-k", type=int, default=5, help="examples per weight (default 5)")
    p.add_argument("--sign", choices=SIGNS, default="abs", help="which R to rank by")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.set_defaults(func=cmd_top)

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

    p = sub.add_parser("groups", help="R of a parameter summed per training class (needs labels in the store)")
    p.add_argument("store", help="path or URL of the store")
    p.add_argument("--param", required=True, help="parameter name, e.g. net.fc2.weight")
    p.add_argument("--sign", choices=SIGNS, default="abs", help="which R to sum")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ResponsibilityError, FileNotFoundError, KeyError, ValueError, IndexError, PermissionError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        # One line, always: multi-line messages (store mismatch lists) are joined.
        message = "; ".join(line.strip(" -") for line in str(message).splitlines() if line.strip())
        print(f"responsibility {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
