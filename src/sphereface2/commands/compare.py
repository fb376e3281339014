"""``sphereface2 compare MODEL IMAGE_A IMAGE_B``: the cosine of two faces, and a verdict
when a threshold is known.

Thin over :meth:`sphereface2.inference.FaceModel.compare` and
:func:`sphereface2.inference.threshold.find_threshold`.
"""

from __future__ import annotations

import argparse

_EPILOG = """\
examples:
  sphereface2 compare runs/sf2 alice_1.jpg alice_2.jpg
  sphereface2 compare exports/sf2/model.onnx a.jpg b.jpg --threshold 0.32
  sphereface2 compare runs/sf2 a.jpg b.jpg --report runs/sf2/eval_avg5/report.json --set LFW

The images should be aligned face crops (as the model was trained on); they are resized to
the model's input size. The verdict uses the OpenSphere best threshold (cosine >= threshold:
same) of MODEL's run-folder evaluation report (RUN/eval/report.json, written by
'sphereface2 evaluate'): its Combined set when there is one, else its largest set. Without
a report only the cosine is printed; --threshold T gives one.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` command."""
    parser = subparsers.add_parser(
        "compare",
        help="cosine similarity of two face images, with a same/different verdict",
        description="Embed two face images with MODEL and print their cosine similarity; "
        "with a known threshold, also whether they show the same person.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="checkpoint, run folder, .onnx or export")
    parser.add_argument("image_a", metavar="IMAGE_A", help="first face image")
    parser.add_argument("image_b", metavar="IMAGE_B", help="second face image")
    parser.add_argument(
        "--threshold", type=float, metavar="T", help="cosine threshold (overrides any report)"
    )
    parser.add_argument(
        "--report", metavar="FILE", help="evaluation report.json (default: RUN/eval/report.json)"
    )
    parser.add_argument(
        "--set", dest="set_name", metavar="NAME", help="report set to take the threshold from"
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flip test: sum with the embedding of the mirrored image (default: on)",
    )
    parser.add_argument(
        "--average-last", metavar="N", type=int, help="with a run folder: average N checkpoints"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from sphereface2.inference import load_model
    from sphereface2.inference.threshold import RUN_REPORT, find_threshold

    threshold = find_threshold(args.model, args.threshold, args.report, args.set_name)
    model = load_model(
        args.model, device=args.device, flip=args.flip, average_last=args.average_last
    )
    cosine = model.compare(args.image_a, args.image_b)
    print(f"cosine: {cosine:.4f}")
    if threshold is None:
        where = (
            f"{model.run_folder} has no {RUN_REPORT}"
            if model.run_folder
            else f"{args.model} is not in a run folder and no --report was given"
        )
        print(
            f"verdict: unknown: no threshold is known ({where}); run 'sphereface2 evaluate' "
            "on the model or give --threshold T"
        )
        return 0
    relation = ">=" if threshold.verdict(cosine) == "same" else "<"
    print(
        f"verdict: {threshold.verdict(cosine)} (cosine {cosine:.4f} {relation} "
        f"{threshold.describe()})"
    )
    if threshold.evaluated_model and _weights_part(threshold.evaluated_model) != _weights_part(
        model.description
    ):
        print(
            f"note: the report evaluated {threshold.evaluated_model}; this is {model.description}"
        )
    return 0


def _weights_part(description: str) -> str:
    """A model description without its trailing ``from PATH`` (the same weights may be
    named by another path, e.g. relative to another working folder)."""
    return description.rsplit(" from ", 1)[0]
