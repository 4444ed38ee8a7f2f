"""``responsibility`` command line: inspect, fold and query stores offline (no Trainer needed).

Each command module registers its subcommands; errors a user can fix come out as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from responsibility.cli import compare_command, explore_command, query_command, store_commands
from responsibility.errors import ResponsibilityError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="responsibility",
        description="Inspect, fold and query responsibility stores recorded by ResponsibilityCallback.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    store_commands.register(sub)
    query_command.register(sub)
    explore_command.register(sub)
    compare_command.register(sub)
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
