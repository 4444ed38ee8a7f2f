"""``responsibility`` command line: inspect, fold and query stores offline (no Trainer needed), and act on a
run's training data (suspects, curate, compare).

Each command module registers its subcommands; errors a user can fix come out as one line with exit code 2.
Ctrl-C ends a command with one line (exit code 130); a closed output pipe (``... | head``) ends it quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from responsibility.cli import compare_command, curate_commands, explore_command, query_command, store_commands
from responsibility.errors import ResponsibilityError
from responsibility.progress import quiet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="responsibility",
        description="Inspect, fold and query responsibility stores recorded by ResponsibilityCallback; find the "
        "training examples to look at, curate them and compare the retrained run.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    store_commands.register(sub)
    query_command.register(sub)
    curate_commands.register(sub)
    explore_command.register(sub)
    compare_command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with quiet(args.quiet):
            code = int(args.func(args))
        sys.stdout.flush()  # inside the try: a reader that went away must not surface at exit
        return code
    except (ResponsibilityError, FileNotFoundError, KeyError, ValueError, IndexError, PermissionError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        # One line, always: multi-line messages (store mismatch lists, "- " bullets) are joined.
        lines = [line.strip() for line in str(message).splitlines()]
        message = "; ".join(line.removeprefix("- ") for line in lines if line)
        print(f"responsibility {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        detail = f": {exc}" if str(exc) else ""
        print(f"\nresponsibility {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader closed the pipe (e.g. `| head`): stop writing; point stdout at /dev/null so that the
        # interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
