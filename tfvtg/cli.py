"""The ``tfvtg`` command line: one subcommand per module in tfvtg.commands."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import TfvtgError

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
    except TfvtgError as exc:
        # every error a user can cause: one line, no traceback
        print(f"tfvtg {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line; TFVTG_DEBUG=1 shows the traceback
        if os.environ.get("TFVTG_DEBUG"):
            raise
        print(f"tfvtg {args.command}: internal error ({type(exc).__name__}: {_one_line(exc)}); "
              "run again with TFVTG_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
