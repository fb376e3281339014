"""Argument parsing shared by the commands: options and positionals in any order.

Plain argparse stops collecting positionals at the first option, so
``evaluate runs/sf2 --average-last 5 val/*.bin`` and ``train cfg.yaml --resume auto
optim.lr=0.1`` fail with "unrecognized arguments". argparse's intermixed parsing takes
them in any order; :func:`intermixed` switches a sub-command's parser to it.
"""

from __future__ import annotations

import argparse


class IntermixedParser(argparse.ArgumentParser):
    """An ArgumentParser whose ``parse_known_args`` is argparse's intermixed parse.

    ``required_positional`` is ``(dest, metavar)`` of a positional declared with
    ``nargs="?"`` that is nonetheless required: argparse's own message for a missing one
    would also list the optional positionals after it (``MODEL, DATA``).
    """

    _parsing = False
    required_positional: tuple[str, str] | None = None

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._parsing:  # the intermixed parser calls back in: do the plain parse
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            parsed, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False
        required = self.required_positional
        if required is not None and getattr(parsed, required[0], None) is None:
            self.error(f"the following arguments are required: {required[1]}")
        return parsed, extras


def intermixed(
    parser: argparse.ArgumentParser, required_positional: tuple[str, str] | None = None
) -> argparse.ArgumentParser:
    """Make ``parser`` (built by ``add_subparsers().add_parser``, which always builds a plain
    ArgumentParser) an :class:`IntermixedParser`; returns it."""
    parser.__class__ = IntermixedParser
    parser.required_positional = required_positional  # type: ignore[attr-defined]
    return parser
