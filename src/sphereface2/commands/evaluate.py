"""``sphereface2 evaluate MODEL DATA...``: verification accuracy under both protocols.

Thin over :func:`sphereface2.evaluate.runner.evaluate_verification_sets` and
:func:`sphereface2.evaluate.report.write_report`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

_EPILOG = """\
examples:
  sphereface2 evaluate runs/sf2 lfw.bin agedb_30.bin calfw.bin cplfw.bin
  sphereface2 evaluate runs/sf2 --average-last 5 val/*.bin --out runs/sf2/eval_avg5
  sphereface2 evaluate model.onnx lfw/pairs.txt --lfw-root lfw/images
  sphereface2 evaluate ckpt_00080000.pt data/val/lfw_ann.txt   # OpenSphere pair list

MODEL is a checkpoint (.pt), a run folder (its model.pt, else its newest checkpoint; or
--average-last N), a safetensors export or an ONNX file. DATA are InsightFace .bin files,
LFW pairs.txt files (with --lfw-root) or OpenSphere 'label path0 path1' pair lists (images
relative to the list's folder, or --root). Names come from the file names (lfw, agedb_30,
calfw, cplfw map to LFW, AgeDB-30, CALFW, CPLFW); Combined pools those four when all are
given, else every set. Results: InsightFace 10-fold accuracy (flip-sum, squared L2) and
OpenSphere best-threshold accuracy with EER/AUC/TPR@FPR (cosine), each labelled.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="verification accuracy of a model on .bin / LFW / pair-list sets",
        description=(
            "Embed the images of each verification set once (with the flip test) and report "
            "both the InsightFace 10-fold and the OpenSphere best-threshold protocols per set "
            "and combined; writes report.md, report.json and roc.png."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint, run folder, .onnx or export")
    parser.add_argument("data", metavar="DATA", nargs="+", help="verification files")
    parser.add_argument(
        "--name",
        action="append",
        metavar="NAME",
        help="name of each DATA in order (repeat once per DATA; default: from file names)",
    )
    parser.add_argument("--lfw-root", metavar="DIR", help="LFW image folder for pairs.txt")
    parser.add_argument(
        "--root", metavar="DIR", help="image root of pair lists (default: each list's folder)"
    )
    parser.add_argument(
        "--average-last",
        metavar="N",
        type=int,
        help="with a run folder: average the weights of its last N checkpoints",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        help="embed the images only (default: sum with the horizontally flipped image)",
    )
    parser.add_argument(
        "--combine",
        nargs="*",
        metavar="NAME",
        help="sets to pool into Combined (default: the paper's four when present, else all; "
        "no names: no Combined)",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="report folder (default: MODEL's run folder/eval, or ./eval)"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding workers")
    parser.set_defaults(func=run_evaluate)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; others unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_out_dir(model_path: str) -> Path:
    """``<run folder>/eval`` when MODEL is or lies in a run folder, else ``./eval``."""
    from sphereface2.evaluate.model_loading import find_run_folder

    run = find_run_folder(model_path)
    return run / "eval" if run is not None else Path("eval")


def run_evaluate(args: argparse.Namespace) -> int:
    from sphereface2.evaluate.model_loading import load_embedding_model
    from sphereface2.evaluate.report import build_report, format_text_table, write_report
    from sphereface2.evaluate.runner import ProgressPrinter, evaluate_verification_sets
    from sphereface2.evaluate.verification_sets import open_pair_set

    names = args.name or []
    if names and len(names) != len(args.data):
        raise ValueError(
            f"--name was given {len(names)} time(s) for {len(args.data)} DATA file(s); give "
            "one name per file, in order"
        )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device)
    model = load_embedding_model(args.model, device, args.average_last)
    print(f"model: {model.description}", file=sys.stderr)
    sets = [
        open_pair_set(
            path,
            names[i] if names else None,
            model.input_size,
            lfw_root=args.lfw_root,
            root=args.root,
        )
        for i, path in enumerate(args.data)
    ]
    run = evaluate_verification_sets(
        model,
        sets,
        batch_size=args.batch_size,
        flip=args.flip,
        num_workers=args.num_workers,
        progress=lambda name: ProgressPrinter(f"embedding {name}"),
        combine=args.combine,
    )
    settings = {
        "device": device,
        "batch size": args.batch_size,
        "average last": args.average_last,
        "command": "sphereface2 evaluate " + shlex.join([args.model, *args.data]),
    }
    report = build_report(model.name, model.description, run, settings=settings)
    print(format_text_table(report))
    out = Path(args.out) if args.out else default_out_dir(args.model)
    written = write_report(report, out)
    print(
        f"{run.num_images} images embedded in {run.embed_seconds:.1f} s, metrics in "
        f"{run.metric_seconds:.2f} s; wrote " + ", ".join(str(p) for p in written.values())
    )
    return 0
