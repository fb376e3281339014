"""``sphereface2 evaluate MODEL [DATA...] [--ijb DIR] [--megaface-probes P
--megaface-distractors D]``: verification accuracy under both protocols, IJB-B/C template
verification (and 1:N) and MegaFace identification.

Thin over :func:`sphereface2.evaluate.runner.evaluate_verification_sets`,
:func:`sphereface2.evaluate.ijb_runner.evaluate_ijb`,
:func:`sphereface2.evaluate.megaface_runner.evaluate_megaface` and
:func:`sphereface2.evaluate.report.write_report`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sphereface2.commands.parsing import intermixed

_EPILOG = """\
examples:
  sphereface2 evaluate runs/sf2 lfw.bin agedb_30.bin calfw.bin cplfw.bin
  sphereface2 evaluate runs/sf2 --average-last 5 val/*.bin --out runs/sf2/eval_avg5
  sphereface2 evaluate model.onnx lfw/pairs.txt --lfw-root lfw/images
  sphereface2 evaluate ckpt_00080000.pt data/val/lfw_ann.txt   # OpenSphere pair list
  sphereface2 evaluate runs/sf2 --ijb data/IJB_release --ijb-name IJBC --ijb-1n
  sphereface2 evaluate runs/sf2 --megaface-probes facescrub_aligned \
      --megaface-distractors megaface_aligned --megaface-sizes 1000 10000 1000000

MODEL is a checkpoint (.pt), a run folder (its model.pt, else its newest checkpoint; or
--average-last N), a safetensors export or an ONNX file. DATA are InsightFace .bin files,
LFW pairs.txt files (with --lfw-root) or OpenSphere 'label path0 path1' pair lists (images
relative to the list's folder, or --root). Names come from the file names (lfw, agedb_30,
calfw, cplfw map to LFW, AgeDB-30, CALFW, CPLFW); Combined pools those four when all are
given, else every set. Results: InsightFace 10-fold accuracy (flip-sum, squared L2) and
OpenSphere best-threshold accuracy with EER/AUC/TPR@FPR (cosine), each labelled.

--ijb DIR: IJB-B/C 1:1 from the loose crops (IJB_release/IJBC/{meta,loose_crop}): align from
the 5 landmarks, flip-sum x faceness, media-averaged template pooling, cosine; TAR@FAR read
at the nearest ROC point (InsightFace) and interpolated (OpenSphere). --ijb-1n adds 1:N
(insightface: galleries searched separately, non-mated-max TPIR averaged; opensphere: merged
gallery, pair-based TPIR). --megaface-*: rank-1 and TAR@FAR=1e-6 for each distractor count
(the first N distractors; images must be aligned crops, or devkit feature files).
DATA may be left out when --ijb or --megaface-* is given.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="verification accuracy of a model on .bin / LFW / pair-list sets",
        usage="%(prog)s MODEL [DATA ...] [options]",
        description=(
            "Embed the images of each verification set once (with the flip test) and report "
            "both the InsightFace 10-fold and the OpenSphere best-threshold protocols per set "
            "and combined; writes report.md, report.json and roc.png (roc_ijb.png with --ijb)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # DATA may come after options (``MODEL --average-last 5 val/*.bin``); nargs="?" on MODEL
    # so that a missing MODEL is reported alone (the check is in the parser).
    intermixed(parser, required_positional=("model", "MODEL"))
    _add_arguments(parser)
    parser.set_defaults(func=run_evaluate)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", nargs="?", help="checkpoint, run folder, .onnx or export"
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        nargs="*",
        help="verification files (optional with --ijb/--megaface)",
    )
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
    ijb = parser.add_argument_group("IJB-B / IJB-C")
    ijb.add_argument(
        "--ijb", metavar="DIR", help="IJB_release folder (or its IJBB/IJBC folder, or its parent)"
    )
    ijb.add_argument(
        "--ijb-name",
        type=str.upper,
        choices=("IJBB", "IJBC"),
        help="which set (default: the only one found under --ijb)",
    )
    ijb.add_argument(
        "--ijb-1n",
        nargs="?",
        const="insightface",
        choices=("insightface", "opensphere"),
        metavar="CONVENTION",
        help="also run 1:N: insightface (default; galleries separately) or opensphere (merged)",
    )
    ijb.add_argument(
        "--ijb-cache",
        metavar="FILE.npy",
        help="cache the image features here; a re-run with the same model and set re-uses them",
    )
    ijb.add_argument("--ijb-images", metavar="DIR", help="loose crops (default <set>/loose_crop)")
    ijb.add_argument(
        "--ijb-no-faceness",
        dest="ijb_faceness",
        action="store_false",
        help="do not weight image features by the detector's faceness score",
    )
    mega = parser.add_argument_group("MegaFace challenge 1")
    mega.add_argument(
        "--megaface-probes",
        metavar="PATH",
        help="FaceScrub-like identity folder, list file, or devkit feature tree",
    )
    mega.add_argument(
        "--megaface-distractors",
        metavar="PATH",
        help="distractor image folder, list file (its order), or devkit feature tree",
    )
    mega.add_argument(
        "--megaface-sizes",
        nargs="+",
        type=int,
        metavar="N",
        help="distractor counts (default: 10, 100, ... up to the number available)",
    )
    mega.add_argument(
        "--megaface-suffix", metavar="NAME", help="feature-file suffix (default: the only one)"
    )


def resolve_device(device: str) -> str:
    """The device name for ``--device`` (``models.device.resolve_device``'s rule)."""
    from sphereface2.models.device import resolve_device as resolve

    return str(resolve(device))


def default_out_dir(model_path: str) -> Path:
    """``<run folder>/eval`` when MODEL is or lies in a run folder, else ``./eval``."""
    from sphereface2.models.loading import find_run_folder

    run = find_run_folder(model_path)
    return run / "eval" if run is not None else Path("eval")


def _check_args(args: argparse.Namespace) -> None:
    names = args.name or []
    if names and len(names) != len(args.data):
        raise ValueError(
            f"--name was given {len(names)} time(s) for {len(args.data)} DATA file(s); give "
            "one name per file, in order"
        )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    megaface = (args.megaface_probes, args.megaface_distractors)
    if any(megaface) and not all(megaface):
        raise ValueError("MegaFace needs both --megaface-probes and --megaface-distractors")
    ijb_only = ("ijb_name", "ijb_1n", "ijb_cache", "ijb_images")
    given = [f"--{k.replace('_', '-')}" for k in ijb_only if getattr(args, k) is not None]
    if given and not args.ijb:
        raise ValueError(f"{', '.join(given)} needs --ijb DIR")
    if (args.megaface_sizes or args.megaface_suffix) and not any(megaface):
        raise ValueError("--megaface-sizes/--megaface-suffix need the MegaFace sets")
    if not args.data and not args.ijb and not any(megaface):
        raise ValueError(
            "nothing to evaluate: give DATA files, --ijb DIR, or --megaface-probes and "
            "--megaface-distractors"
        )


def _check_outputs(args: argparse.Namespace, out: Path) -> None:
    """Fail before any embedding when the report (or a new IJB cache) cannot be written."""
    from sphereface2.commands.outputs import check_writable_file, check_writable_folder

    check_writable_folder(out, "the report folder")
    if args.ijb_cache:
        from sphereface2.evaluate.ijb_runner import cache_paths

        npy = cache_paths(args.ijb_cache)[0]
        if not npy.is_file():
            check_writable_file(npy, "the IJB feature cache")


def command_line(args: argparse.Namespace) -> str:
    """The command that re-runs this evaluation as it is: MODEL, DATA and every option
    whose value differs from its default (read from the parser, so none is left out)."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_arguments(parser)
    options: list[str] = []
    for action in parser._actions:
        value = getattr(args, action.dest, action.default)
        if not action.option_strings or value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreConstAction):  # store_true / store_false
            options.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                options += [flag, str(item)]
        elif action.nargs in ("*", "+"):
            options += [flag, *map(str, value)]
        else:
            options += [flag, str(value)]
    # A file named like an option: ./ for MODEL (the same file), DATA after "--".
    model = os.path.join(".", args.model) if args.model.startswith("-") else args.model
    if any(p.startswith("-") for p in args.data):
        words = [model, *options, "--", *args.data]
    else:
        words = [model, *args.data, *options]
    return "sphereface2 evaluate " + shlex.join(words)


@dataclass
class _Results:
    """What the evaluations produced, gathered for one report."""

    settings: dict[str, object]
    ijb: dict[str, object] = field(default_factory=dict)
    identification: list = field(default_factory=list)
    ijb_roc: list = field(default_factory=list)
    timings: list[str] = field(default_factory=list)


def run_evaluate(args: argparse.Namespace) -> int:
    from sphereface2.evaluate.report import build_report, format_text_table, write_report
    from sphereface2.models.loading import load_embedding_model

    _check_args(args)
    out = Path(args.out) if args.out else default_out_dir(args.model)
    _check_outputs(args, out)
    device = resolve_device(args.device)
    model = load_embedding_model(args.model, device, args.average_last)
    print(f"model: {model.description}", file=sys.stderr)
    results = _Results(
        settings={
            "device": device,
            "batch size": args.batch_size,
            "average last": args.average_last,
            "command": command_line(args),
        }
    )
    run = _run_verification(args, model, results) if args.data else None
    if args.ijb:
        _run_ijb(args, model, device, results)
    if args.megaface_probes:
        _run_megaface(args, model, device, results)
    report = build_report(
        model.name,
        model.description,
        run,
        ijb=results.ijb,
        settings=results.settings,
        identification=results.identification,
        ijb_roc=results.ijb_roc,
    )
    print(format_text_table(report))
    written = write_report(report, out)
    print("; ".join(results.timings) + "; wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def _run_verification(args: argparse.Namespace, model, results: _Results):
    from sphereface2.evaluate.runner import ProgressPrinter, evaluate_verification_sets
    from sphereface2.evaluate.verification_sets import open_pair_set

    names = args.name or []
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
    results.timings.append(
        f"verification: {run.num_images} images embedded in {run.embed_seconds:.1f} s, "
        f"metrics in {run.metric_seconds:.2f} s"
    )
    return run


def _run_ijb(args: argparse.Namespace, model, device: str, results: _Results) -> None:
    from sphereface2.evaluate.ijb_runner import evaluate_ijb
    from sphereface2.evaluate.roc_plot import roc_points
    from sphereface2.metrics.roc import roc_curve
    from sphereface2.models.embed import ProgressPrinter

    result = evaluate_ijb(
        model,
        args.ijb,
        args.ijb_name,
        batch_size=args.batch_size,
        flip=args.flip,
        use_faceness=args.ijb_faceness,
        num_workers=args.num_workers,
        progress=ProgressPrinter(f"embedding {args.ijb_name or 'IJB'}"),
        image_dir=args.ijb_images,
        cache=args.ijb_cache,
        one_to_n=args.ijb_1n,
        device=device,
    )
    verification, identification = result.report_entries()
    results.ijb.update(verification)
    results.identification += identification
    roc = roc_curve(result.scores, result.labels)
    results.ijb_roc.append(roc_points(result.name, roc, result.verification.auc))
    results.settings[result.name] = (
        f"{result.source}; {result.num_images} images, {result.num_templates} templates; "
        f"faceness weighting {'on' if result.use_faceness else 'off'}"
        + (f"; image features from the cache {args.ijb_cache}" if result.from_cache else "")
    )
    results.timings.append(
        f"{result.name}: {result.num_images} images "
        + ("read from the cache" if result.from_cache else "embedded")
        + f" in {result.embed_seconds:.1f} s, metrics in {result.metric_seconds:.2f} s"
    )


def _run_megaface(args: argparse.Namespace, model, device: str, results: _Results) -> None:
    from sphereface2.evaluate.megaface_runner import evaluate_megaface
    from sphereface2.models.embed import ProgressPrinter

    mega = evaluate_megaface(
        model,
        args.megaface_probes,
        args.megaface_distractors,
        args.megaface_sizes,
        batch_size=args.batch_size,
        flip=args.flip,
        num_workers=args.num_workers,
        device=device,
        feature_suffix=args.megaface_suffix,
        progress=ProgressPrinter("embedding MegaFace"),
    )
    verification, identification = mega.report_entries()
    results.ijb.update(verification)
    results.identification += identification
    results.settings["MegaFace"] = (
        f"{mega.num_probes} probe images of {mega.num_identities} identities "
        f"({mega.probes_from}: {mega.probe_source}); distractors "
        f"({mega.distractors_from}: {mega.distractor_source})"
    )
    results.timings.append(
        f"MegaFace: sets ready in {mega.embed_seconds:.1f} s, metrics in "
        f"{mega.metric_seconds:.2f} s"
    )
