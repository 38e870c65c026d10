"""The ``tfvtg`` command line: one subcommand per module in tfvtg.commands."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines ``register(subparsers)``, which adds its subparser and
# sets ``func`` (args -> exit code). Heavy imports stay inside ``func``.
_COMMANDS = ("ground", "extract", "index", "search", "library", "serve", "decompose", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="tfvtg", description="Training-free video temporal grounding.")
    parser.add_argument("--version", action="version", version=f"tfvtg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"tfvtg.commands.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not installed
            if exc.name == f"tfvtg.commands.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
