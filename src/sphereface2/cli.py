"""Command-line entry point: ``sphereface2 <command> ...``, thin over the Python API.

Each command family lives in ``sphereface2.commands.<family>`` and exposes
``register(subparsers)``; the parser sets ``func`` to a callable taking the namespace.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from sphereface2 import __version__

# Families in the order they appear in --help; each module adds its own sub-commands.
_COMMAND_MODULES = ("demo", "data", "train", "evaluate", "export", "compare", "gallery")
#: Set to 1 to see the traceback of the failures that are otherwise reported in one line.
DEBUG_ENV = "SPHEREFACE2_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sphereface2",
        description="Train and evaluate face recognition models with the SphereFace2 loss.",
        epilog=f"Known failures are one line on stderr; {DEBUG_ENV}=1 shows their traceback.",
    )
    parser.add_argument("--version", action="version", version=f"sphereface2 {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in _COMMAND_MODULES:
        module = importlib.import_module(f"sphereface2.commands.{family}")
        module.register(subparsers)
    return parser


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run one command; known failures print one line on stderr and return 1."""
    from sphereface2.commands.os_errors import describe_os_error

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
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        # Known, user-facing failures: one clear line, no traceback (unless debugging).
        if _debugging():
            raise
        message = describe_os_error(err) if isinstance(err, OSError) else str(err)
        if isinstance(err, OSError) and err.errno is not None:
            message += f" (set {DEBUG_ENV}=1 for the traceback)"
        print(f"sphereface2 {args.command}: error: {' '.join(message.split())}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
