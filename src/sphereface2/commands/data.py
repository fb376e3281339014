"""``sphereface2 data ...``: pack, pack-pairs, inspect, align and audit data files.

Each sub-command is one call of a public function of :mod:`sphereface2.data`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run_pack(args: argparse.Namespace) -> int:
    from sphereface2.data.packing import pack_training_set

    result = pack_training_set(
        args.src,
        args.out_prefix,
        quality=args.quality,
        root=args.root,
        log=_log,
        skip_corrupt=args.skip_corrupt,
        overwrite=args.overwrite,
    )
    sizes = ", ".join(f"{k} x{v}" for k, v in result["image_sizes"].items())
    print(
        f"wrote {result['rec']} and {result['idx']}: {result['images']} images of "
        f"{result['num_classes']} identities ({result['copied']} JPEGs copied as they are, "
        f"{result['reencoded']} re-encoded at quality {args.quality}; sizes {sizes})"
    )
    if args.skip_corrupt:
        print(f"skipped {result['skipped']} images that failed to decode (listed on stderr)")
    print(f"wrote {result['property']}")
    return 0


def _run_pack_pairs(args: argparse.Namespace) -> int:
    from sphereface2.data.packing import pack_pairs

    result = pack_pairs(args.pairs, args.out_bin, root=args.root, quality=args.quality)
    print(
        f"wrote {result['bin']}: {result['pairs']} pairs ({result['genuine']} genuine, "
        f"{result['impostor']} impostor) from {result['unique_images']} images "
        f"({result['reencoded']} re-encoded)"
    )
    return 0


def _print_to_pipe(text: str) -> None:
    """Print ``text``; a reader that stops early (``| head``) ends the output quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _run_inspect(args: argparse.Namespace) -> int:
    from sphereface2.data.inspect import format_inspection, has_problems, inspect_path

    info = inspect_path(
        args.path,
        samples=args.samples,
        lfw_root=args.lfw_root,
        check_labels=not args.no_label_check,
        log=_log,
    )
    _print_to_pipe(json.dumps(info, indent=2) if args.json else format_inspection(info))
    return 1 if has_problems(info) else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` family and its sub-commands."""
    parser = subparsers.add_parser(
        "data",
        help="pack, inspect, align and audit face data files",
        description="Convert, check and prepare training and validation data.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    pack = sub.add_parser(
        "pack",
        help="pack an image folder or list into RecordIO (train.rec/.idx/property)",
        description=(
            "Pack a training set into InsightFace's MS1M-style RecordIO: OUT_PREFIX.rec, "
            "OUT_PREFIX.idx and a 'property' file next to them. SRC is a folder with one "
            "sub-folder per identity, a folder holding label.txt, or a list file ('path "
            "label' lines, 'path name' lines with identity names, 'path' lines labelled by "
            "folder, or an MXNet .lst). Every image is decoded once to check it; JPEG files "
            "are then copied byte for byte, other formats JPEG-encoded at --quality. An image "
            "that fails to decode stops the pack (naming it) unless --skip-corrupt. A folder "
            "that already holds 'property' or OUT_PREFIX.rec/.idx is refused unless "
            "--overwrite; a failed pack leaves no partial files."
        ),
    )
    pack.add_argument("src", metavar="SRC", help="image folder or list file")
    pack.add_argument("out_prefix", metavar="OUT_PREFIX", help="output prefix, e.g. out/train")
    pack.add_argument(
        "--quality", type=int, default=95, help="JPEG quality for non-JPEG inputs (default: 95)"
    )
    pack.add_argument(
        "--root", default=None, help="folder that list paths are relative to (default: the list's)"
    )
    pack.add_argument(
        "--skip-corrupt",
        action="store_true",
        help="leave out images that fail to decode (each is named on stderr) instead of stopping",
    )
    pack.add_argument(
        "--overwrite", action="store_true", help="replace a training set already in the folder"
    )
    pack.set_defaults(func=_run_pack)

    pairs = sub.add_parser(
        "pack-pairs",
        help="pack a 'label path0 path1' pair list into a validation .bin",
        description=(
            "Write an InsightFace-style validation .bin (images stored as uint8 arrays, the "
            "newer layout) from an OpenSphere pair list with one 'label path0 path1' line per "
            "pair (label 1 = same person). JPEG files are stored byte for byte; other formats "
            "are JPEG-encoded at --quality."
        ),
    )
    pairs.add_argument("pairs", metavar="PAIRS", help="pair list file")
    pairs.add_argument("out_bin", metavar="OUT.bin", help="output .bin file")
    pairs.add_argument(
        "--root", default=None, help="folder that image paths are relative to (default: the list's)"
    )
    pairs.add_argument(
        "--quality", type=int, default=95, help="JPEG quality for non-JPEG inputs (default: 95)"
    )
    pairs.set_defaults(func=_run_pack_pairs)

    inspect = sub.add_parser(
        "inspect",
        help="summarise and check a .rec, .bin, list, pair list, LFW pairs.txt or image folder",
        description=(
            "Print what PATH holds (identities, images, pairs, sizes), check every label "
            "(a RecordIO set's record headers are all read, no image is decoded; list lines "
            "are all parsed; every image of a pair list is looked for) and decode --samples "
            "evenly spaced images. Exits with status 1 when a label, a file or a sampled "
            "image has a problem."
        ),
    )
    inspect.add_argument("path", metavar="PATH", help="file or folder to inspect")
    inspect.add_argument(
        "--samples", type=int, default=5, help="number of images to decode (default: 5)"
    )
    inspect.add_argument(
        "--lfw-root",
        default=None,
        metavar="DIR",
        help="read PATH as LFW's pairs.txt with images DIR/name/name_000N.jpg",
    )
    inspect.add_argument(
        "--no-label-check",
        action="store_true",
        help="skip reading every RecordIO record header (faster on huge sets)",
    )
    inspect.add_argument("--json", action="store_true", help="print machine-readable JSON")
    inspect.set_defaults(func=_run_inspect)

    from sphereface2.commands.data_audit import add_audit_command

    add_audit_command(sub)

    try:
        from sphereface2.commands.data_align import add_align_command
    except ModuleNotFoundError as err:
        if err.name != "sphereface2.commands.data_align":
            raise  # the module exists but something it needs is missing: say so
        return
    add_align_command(sub)
