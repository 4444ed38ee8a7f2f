"""The ``responsibility`` command line."""

from responsibility.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
