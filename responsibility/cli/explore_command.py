"""The ``explore`` command: serve recorded runs in a local web app (see docs/explorer.md)."""

from __future__ import annotations

import argparse
from typing import Any

from responsibility.errors import ResponsibilityError


def register(sub: Any) -> None:
    """Add the ``explore`` command to the ``responsibility`` parser's subcommands."""
    p = sub.add_parser(
        "explore",
        help="open runs in a local web app: suspects, test inputs, classes, curation, retraining, comparison",
        description="Serve one or more Hydra run directories of scripts/train.py in a local web app. The printed "
        "URL carries a per-launch token that every change needs.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="Hydra run directory (config, checkpoint, store)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser; just print the URL")
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    try:
        import PIL  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ResponsibilityError(
            f"the explorer needs {exc.name}: pip install 'responsibility[explore]' (with the train extra)"
        ) from None
    from responsibility.explorer import explore

    explore(args.run_dirs, port=args.port, host=args.host, open_browser=not args.no_browser)
    return 0
