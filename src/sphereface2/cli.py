"""Command-line entry point: ``sphereface2 <command> ...``, thin over the Python API.

Each command family lives in ``sphereface2.commands.<family>`` and exposes
``register(subparsers)``; the parser sets ``func`` to a callable taking the namespace.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sphereface2 import __version__

# Families in the order they appear in --help; each module adds its own sub-commands.
_COMMAND_MODULES = ("demo", "data", "train", "evaluate", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sphereface2",
        description="Train and evaluate face recognition models with the SphereFace2 loss.",
    )
    parser.add_argument("--version", action="version", version=f"sphereface2 {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in _COMMAND_MODULES:
        module = importlib.import_module(f"sphereface2.commands.{family}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        # Known, user-facing failures: one clear line, no traceback.
        print(f"sphereface2 {args.command}: error: {err}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
