"""``sphereface2 data ...``: pack, pack-pairs, inspect and align data files."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="pack, inspect and align face data files")
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    del sub  # sub-commands are added by the data module as they land
