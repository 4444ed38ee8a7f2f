"""The data commands: ``suspects`` ranks a run's training examples, ``curate`` records what to do about them.

They are the explorer's Suspects view and curation actions on the command line, computed by the same functions
(:mod:`responsibility.explorer.views`, cached in ``RUN/.explorer/``) and writing the same ``RUN/curation.json``,
so a terminal and the web app can take turns on one run. A curation takes effect when the run is trained again
with it: ``curate`` prints that command, and ``compare`` then reports what changed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from responsibility.choices import CURATION_ACTIONS, SUSPECT_FILTERS, SUSPECT_SCORES

_COMMANDS = (*CURATION_ACTIONS, "undo", "show")
_VALUE_OPTION = {"relabel": "--label", "reweight": "--factor", "note": "--text", "tag": "--text", "untag": "--text"}


def register(sub: Any) -> None:
    """Add ``suspects`` and ``curate`` to the ``responsibility`` parser's subcommands."""
    p = sub.add_parser(
        "suspects",
        help="training examples of a run ranked by how suspicious they look (mislabelled, odd)",
        description="Rank a run's training examples by a score, most suspicious first (the explorer's Suspects "
        "view; docs/explorer.md says what each score measures). The first use of a score computes it, cached in "
        "RUN/.explorer/.",
    )
    p.add_argument("run", metavar="RUN", help="Hydra run directory of scripts/train.py")
    p.add_argument("--score", choices=SUSPECT_SCORES, default=None, help="default: the first the run has")
    p.add_argument("--class", dest="cls", metavar="C", help="only examples labelled C (index, name or 7:Sneaker)")
    p.add_argument("--only", choices=SUSPECT_FILTERS, default="all", help="flipped: planted flips; curated: changed")
    p.add_argument("-k", type=int, default=20, help="how many to list (default 20)")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    p.set_defaults(func=cmd_suspects)

    p = sub.add_parser(
        "curate",
        help="relabel, remove, restore, reweight, note or tag training examples of a run (RUN/curation.json)",
        description="Record a change in RUN/curation.json, the log the explorer also edits; 'undo' takes the last "
        "change back, 'show' lists the changes. Nothing is retrained until you run the printed command.",
    )
    p.add_argument("run", metavar="RUN", help="Hydra run directory of scripts/train.py")
    p.add_argument("action", choices=_COMMANDS, help="what to do")
    p.add_argument("ids", nargs="?", help="example ids, e.g. 17,904 (or --top K)")
    p.add_argument("--top", type=int, metavar="K", help="instead of ids: the K most suspicious by --score")
    p.add_argument("--score", choices=SUSPECT_SCORES, default=None, help="--top's ranking (default: as suspects)")
    p.add_argument("--class", dest="cls", metavar="C", help="--top within the examples labelled C")
    p.add_argument("--label", help="relabel: the new class (index, name or 7:Sneaker)")
    p.add_argument("--factor", type=float, help="reweight: the loss factor (> 0; 1 restores)")
    p.add_argument("--text", help="note: its text (empty clears it); tag, untag: the tag")
    p.add_argument("--reason", default="", help="why, kept in the log")
    p.set_defaults(func=cmd_curate)


def _class(run: Any, text: str | None, option: str) -> int | None:
    """A class given by index, by (case-insensitive) name, or as the tables print it (``7:Sneaker``)."""
    if text is None:
        return None
    names = run.class_names
    folded = [n.casefold() for n in names]
    shown = ", ".join(f"{c}:{n}" for c, n in enumerate(names))
    index, _, name = text.partition(":")
    if name and index.isdigit() and int(index) < len(names) and folded[int(index)] == name.casefold():
        return int(index)
    by_index = int(text) if text.isdigit() and int(text) < len(names) else None
    by_name = folded.index(text.casefold()) if text.casefold() in folded else None
    if by_index is not None and by_name is not None and by_index != by_name:
        raise ValueError(
            f"{text!r} (given to {option}) is both class {by_index}'s index and class {by_name}'s name; write it as "
            f"the tables do: {by_index}:{names[by_index]} or {by_name}:{names[by_name]}"
        )
    found = by_name if by_name is not None else by_index
    if found is None:
        raise ValueError(f"{text!r} (given to {option}) is not a class of this run: {shown}")
    return found


def _score(run: Any, name: str | None) -> str:
    from responsibility.explorer.derived import score_names

    have = score_names(run)
    if name is None:
        return have[0]
    if name not in have:
        raise ValueError(f"--score {name}: this run has {', '.join(have)} (the others need its output layer recorded)")
    return name


def _ids(text: str) -> list[int]:
    try:
        return [int(i) for i in text.split(",") if i.strip()]
    except ValueError:
        raise ValueError(f"ids must be integers separated by commas, e.g. 17,904; got {text!r}") from None


def _about(run: Any, row: dict[str, Any]) -> str:
    """What the working curation (and the run's own) says about one example, in a few words."""
    names = run.class_names
    cur = row["curation"]
    parts = []
    if cur["label"] is not None:
        parts.append(f"relabel -> {cur['label']}:{names[cur['label']]}")
    if cur["removed"]:
        parts.append("remove")
    if cur["weight"] != 1.0:
        parts.append(f"x{cur['weight']:g}")
    parts += [f"#{t}" for t in cur["tags"]]
    if cur["note"]:
        parts.append("note")
    if row["removed_in_run"]:
        parts.append("(left out of this run)")
    return " ".join(parts)


def cmd_suspects(args: argparse.Namespace) -> int:
    from responsibility.explorer import views
    from responsibility.explorer.run import Run

    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    run = Run(args.run)
    score = _score(run, args.score)
    cls = _class(run, args.cls, "--class")
    doc = views.suspects(
        run, run.curation().state, score=score, descending=True, cls=cls, only=args.only, offset=0, limit=args.k
    )
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    names = run.class_names
    scope = "" if cls is None else f" labelled {cls}:{names[cls]}"
    print(
        f"{doc['total']} training examples{scope} of {run.dir}, ranked among all {run.num_examples} by {score}: "
        f"{doc['description']}",
        file=sys.stderr,
    )

    def cls_name(c: int) -> str:
        return f"{c}:{names[c][:12]}"

    flips = run.planted_noise
    print(
        f"{'rank':>5} {'id':>7} {'label':<15} {'predicted':<15} {'score':>12}"
        + (f" {'flipped':<7}" if flips else "")
        + "  curation"
    )
    for row in doc["rows"]:
        line = f"{row['rank']:>5} {row['id']:>7} {cls_name(row['label']):<15} {cls_name(row['predicted']):<15} "
        line += f"{row['score']:>12.6g}"
        if flips:
            line += f" {'yes' if row['flipped'] else '':<7}"
        print(f"{line}  {_about(run, row)}".rstrip())
    return 0


def _given(args: argparse.Namespace, *options: str) -> list[str]:
    """Which of these options (or ``ids``) the command line set."""
    value = {"ids": args.ids, "--top": args.top, "--score": args.score, "--class": args.cls}
    value.update({"--label": args.label, "--factor": args.factor, "--text": args.text})
    return [o for o in options if value[o] is not None]


def _change(run: Any, args: argparse.Namespace) -> tuple[list[int], dict[str, Any]]:
    """The ids and the value of a change, checked against the action before anything is written."""
    from responsibility.explorer import views

    if (args.ids is None) == (args.top is None):
        raise ValueError(f"curate {args.action}: give either example ids (e.g. 17,904) or --top K")
    if args.top is None and (args.score is not None or args.cls is not None):
        raise ValueError("--score and --class choose the examples of --top K; with ids, leave them out")
    if args.ids is None and args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}")
    wanted = _VALUE_OPTION.get(args.action)
    given = _given(args, "--label", "--factor", "--text")
    if set(given) - {wanted}:
        raise ValueError(f"curate {args.action} takes no {', '.join(sorted(set(given) - {wanted}))}")
    if wanted is not None and wanted not in given:
        raise ValueError(f"curate {args.action} needs {wanted}")
    values: dict[str, Any] = {}
    if args.action == "relabel":
        values["label"] = _class(run, args.label, "--label")
    elif args.action == "reweight":
        values["factor"] = args.factor
    elif wanted == "--text":
        values["text"] = args.text
    if args.ids is not None:
        return _ids(args.ids), values
    ids = views.top_ids(run, _score(run, args.score), args.top, _class(run, args.cls, "--class"))
    return ids, values


def _describe(change: Any, names: list[str]) -> str:
    """A change's action and value, e.g. ``relabel -> 7:Sneaker`` or ``reweight x4``."""
    if change.action == "relabel":
        return f"relabel -> {change.label}:{names[change.label]}"
    if change.action == "reweight":
        return f"reweight x{change.factor:g}"
    if change.text is not None:
        return f"{change.action} {change.text!r}"
    return str(change.action)


def _ids_text(ids: Sequence[int], shown: int = 20) -> str:
    return ",".join(map(str, ids[:shown])) + (",..." if len(ids) > shown else "")


def _summary(run: Any, cur: Any) -> str:
    state = cur.state
    return (
        f"{len(cur.changes)} change(s): {len(state.labels)} relabelled, {len(state.removed)} removed, "
        f"{len(state.weights)} reweighted, {len(state.notes)} noted, {len(state.tags)} tagged"
    )


def cmd_curate(args: argparse.Namespace) -> int:
    from responsibility.explorer.jobs import Jobs
    from responsibility.explorer.retrain import retrain_config
    from responsibility.explorer.run import Run

    run = Run(args.run)
    cur = run.curation()
    if args.action in ("show", "undo"):
        given = _given(args, "ids", "--top", "--score", "--class", "--label", "--factor", "--text")
        given += ["--reason"] if args.reason else []
        if given:
            what = "the last change back" if args.action == "undo" else "no change"
            raise ValueError(f"curate {args.action} takes {what}, no {', '.join(given)}")
    if args.action == "show":
        for j, change in enumerate(cur.changes, 1):
            reason = f"  ({change.reason})" if change.reason else ""
            print(f"{j:>4}  {change.time}  {_describe(change, run.class_names)}  ids {_ids_text(change.ids)}{reason}")
        print(f"{run.curation_path}: {_summary(run, cur)}")
        return 0
    if args.action == "undo":
        change = cur.undo()
        done = "took back: "
    else:
        ids, values = _change(run, args)
        change = cur.record(args.action, ids, reason=args.reason, **values)
        done = "recorded: "
    cur.save(run.curation_path)
    print(f"{done}{_describe(change, run.class_names)} of {len(change.ids)} example(s): {_ids_text(change.ids)}")
    print(f"{run.curation_path}: {_summary(run, cur)}")
    if not cur.changes:
        return 0
    target = Jobs.target_for(run.dir)  # the directory the explorer's retrain would make
    _, overrides = retrain_config(run.dir, target)
    print("train with it, then compare:")
    print(f"  python scripts/train.py {' '.join(shlex.quote(o) for o in overrides)}")
    print(f"  responsibility compare {shlex.quote(str(run.dir))} {shlex.quote(str(target))}")
    return 0
