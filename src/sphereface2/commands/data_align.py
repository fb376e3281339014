"""``sphereface2 data align IMAGES LANDMARKS OUT``: five-point alignment of a folder of faces.

Thin over :func:`sphereface2.data.alignment.align_images`; registered by the ``data``
command family through :func:`add_align_command`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from sphereface2.data.alignment import align_images

#: How many failures the command prints; the JSON report (``--report``) has them all.
_SHOWN_FAILURES = 20


def add_align_command(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``align`` sub-command to the ``data`` family's sub-parsers."""
    parser = data_subparsers.add_parser(
        "align",
        help="align face images onto the 112x112 five-point template",
        description=(
            "Warp each image listed in LANDMARKS onto the ArcFace five-point template with a "
            "least-squares similarity transform and write the crops under OUT, keeping the "
            "images' relative paths. LANDMARKS has one 'path x1 y1 ... x5 y5' line per image "
            "(a 12th column, such as IJB's detector score, is ignored); paths are relative to "
            "IMAGES. Images that are missing or cannot be decoded are listed at the end and the "
            "command exits with status 1; the other images are still written."
        ),
    )
    parser.add_argument(
        "images", metavar="IMAGES", help="folder the landmark paths are relative to"
    )
    parser.add_argument("landmarks", metavar="LANDMARKS", help="landmarks file")
    parser.add_argument("out", metavar="OUT", help="output folder for the aligned crops")
    parser.add_argument(
        "--size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=[112, 112],
        help="output height and width (default: 112 112)",
    )
    parser.add_argument(
        "--quality", type=int, default=95, help="JPEG quality of the crops (default: 95)"
    )
    parser.add_argument(
        "--report", metavar="JSON", help="also write the full summary, every failure included"
    )
    parser.set_defaults(func=run_align)
    return parser


def _progress_printer(stream: TextIO, every_s: float = 10.0) -> Callable[[int, int], None]:
    start = time.monotonic()
    last = start

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < every_s and done != total:
            return
        last = now
        rate = done / max(now - start, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("inf")
        print(f"aligned {done}/{total} ({rate:.0f} images/s, ETA {eta:.0f} s)", file=stream)

    return report


def print_summary(summary: dict[str, Any], stream: TextIO | None = None) -> None:
    """Human summary of :func:`align_images`'s result, with the first failures (to stdout)."""
    stream = stream if stream is not None else sys.stdout
    height, width = summary["output_size"]
    print(
        f"aligned {summary['written']} of {summary['total']} images to {height}x{width} "
        f"in {summary['out_dir']}",
        file=stream,
    )
    failed = summary["failed"]
    if failed:
        print(f"{len(failed)} image(s) failed ({summary['landmarks_file']}):", file=stream)
        for item in failed[:_SHOWN_FAILURES]:
            print(f"  line {item['line']}: {item['image']}: {item['reason']}", file=stream)
        if len(failed) > _SHOWN_FAILURES:
            print(f"  ... and {len(failed) - _SHOWN_FAILURES} more", file=stream)


def run_align(args: argparse.Namespace) -> int:
    """Run ``data align`` from parsed arguments; returns the exit status (1 if any failed)."""
    summary = align_images(
        args.landmarks,
        args.out,
        image_root=args.images,
        output_size=tuple(args.size),
        quality=args.quality,
        progress=_progress_printer(sys.stderr),
    )
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    print_summary(summary)
    return 1 if summary["failed"] else 0
