"""``sphereface2 data audit RUN [DATA]``: rank training samples by how well they fit their
trained label, to find the mislabelled ones.

Thin over :func:`sphereface2.evaluate.label_audit.audit_labels`; registered by the ``data``
command family through :func:`add_audit_command`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_audit_command(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``audit`` sub-command to the ``data`` family's sub-parsers."""
    parser = data_subparsers.add_parser(
        "audit",
        help="rank a run's training samples by own-class score to find mislabelled ones",
        description=(
            "Embed every sample of DATA (default: the run's data.train) with RUN's model.pt, "
            "score it against every class proxy of the trained head and rank the samples by "
            "the cosine to their labelled class, lowest (most suspicious) first. The labels "
            "are the ones the run trained with: when it injected label noise, those of "
            "RUN/label_noise.json (or the noise drawn again from the config). Writes "
            "audit.csv (every sample), audit.json (summary; with injected noise, precision, "
            "recall, average precision and ROC AUC of the ranking at finding the changed "
            "labels) and audit_worst.png (the --top worst) into --out."
        ),
    )
    parser.add_argument(
        "run", metavar="RUN", help="run folder (its model.pt), or a model.pt / ckpt_*.pt file"
    )
    parser.add_argument(
        "data", metavar="DATA", nargs="?", help="training set to audit (default: data.train)"
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: RUN/audit)")
    parser.add_argument(
        "--top", type=int, default=64, help="samples on the contact sheet (default: 64)"
    )
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sum with the embedding of the horizontally flipped image (default: on)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding workers")
    parser.set_defaults(func=run_audit)
    return parser


def _default_out(run: str) -> Path:
    from sphereface2.models.loading import find_run_folder

    path = Path(run)
    folder = path if path.is_dir() else find_run_folder(path)
    return (folder if folder is not None else path.parent) / "audit"


def run_audit(args: argparse.Namespace) -> int:
    from sphereface2.commands.evaluate import resolve_device
    from sphereface2.evaluate.label_audit import audit_labels
    from sphereface2.evaluate.label_audit_report import format_summary
    from sphereface2.models.embed import ProgressPrinter

    if args.top < 0:
        raise ValueError(f"--top must be >= 0, got {args.top}")
    result = audit_labels(
        args.run,
        args.data,
        out=args.out or _default_out(args.run),
        top=args.top,
        device=resolve_device(args.device),
        batch_size=args.batch_size,
        flip=args.flip,
        num_workers=args.num_workers,
        progress=ProgressPrinter("embedding"),
    )
    print(format_summary(result))
    return 0
