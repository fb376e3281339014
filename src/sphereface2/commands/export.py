"""``sphereface2 export MODEL OUT`` (ONNX / safetensors) and ``sphereface2 embed MODEL DATA OUT``.

Thin over :func:`sphereface2.export.onnx_export.export_onnx`,
:func:`sphereface2.export.safetensors_export.export_safetensors` and
:func:`sphereface2.export.embeddings.embed_to_files`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sphereface2.commands.evaluate import resolve_device
from sphereface2.commands.outputs import check_writable_file, check_writable_folder

_EXPORT_EPILOG = """\
examples:
  sphereface2 export runs/sf2 exports/sf2                  # exports/sf2/model.onnx
  sphereface2 export runs/sf2 sf2.onnx --average-last 5
  sphereface2 export runs/sf2/model.pt exports/sf2 --format both

ONNX: one input 'images' (batch, 3, H, W) float32 in [-1, 1] ((x - 127.5) / 127.5, RGB)
and one output 'embeddings' (batch, d), the raw embedding; the batch axis is dynamic
unless --static-batch. The file is checked against PyTorch with onnxruntime on random
inputs at two batch sizes and the largest difference is printed. safetensors:
OUT/model.safetensors + OUT/config.json, which 'sphereface2 evaluate' and 'embed' load.
"""

_EMBED_EPILOG = """\
examples:
  sphereface2 embed runs/sf2 /data/faces emb              # emb.npy, emb.csv, emb.json
  sphereface2 embed model.onnx train.rec out/train --normalize

DATA is an identity image folder, a .txt/.lst list, a RecordIO set (.rec or a folder with
train.rec) or a validation .bin. OUT.npy holds float32 embeddings, one row per image:
by default the RAW flip-fused embeddings (image + mirror summed, not normalised); with
--normalize each row is L2-normalised. OUT.csv has 'row,key,label' (key: path relative to
the data folder, record key or .bin image index; label empty when unknown).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``embed`` commands."""
    export = subparsers.add_parser(
        "export",
        help="export a model to ONNX and/or safetensors",
        description="Export a trained backbone to ONNX (checked with onnxruntime) and/or "
        "safetensors with its config.",
        epilog=_EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("model", metavar="MODEL", help="checkpoint, run folder or export")
    export.add_argument(
        "out", metavar="OUT", help="output folder (or a .onnx file with --format onnx)"
    )
    export.add_argument(
        "--format", choices=("onnx", "safetensors", "both"), default="onnx", help="(default onnx)"
    )
    export.add_argument(
        "--opset",
        type=int,
        default=17,
        help="ONNX opset (default 17; 7 to 20 with torchscript, 18 and newer with dynamo)",
    )
    export.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch.onnx exporter: TorchScript-based (default) or dynamo (needs onnxscript, "
        "opset >= 18)",
    )
    export.add_argument("--static-batch", action="store_true", help="fix the ONNX batch size at 1")
    export.add_argument(
        "--average-last", metavar="N", type=int, help="with a run folder: average N checkpoints"
    )
    export.set_defaults(func=run_export)

    embed = subparsers.add_parser(
        "embed",
        help="embed every image of a folder, list, .rec or .bin into OUT.npy + OUT.csv",
        description="Write the embeddings of a whole image set with an index of the images.",
        epilog=_EMBED_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    embed.add_argument("model", metavar="MODEL", help="checkpoint, run folder, .onnx or export")
    embed.add_argument("data", metavar="DATA", help="image folder, list, .rec or .bin")
    embed.add_argument("out", metavar="OUT", help="output prefix (OUT.npy, OUT.csv, OUT.json)")
    embed.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sum with the embedding of the horizontally flipped image (default: on)",
    )
    embed.add_argument(
        "--normalize", action="store_true", help="L2-normalise each row (default: raw)"
    )
    embed.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    embed.add_argument("--root", metavar="DIR", help="image root of a list file")
    embed.add_argument(
        "--average-last", metavar="N", type=int, help="with a run folder: average N checkpoints"
    )
    embed.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    embed.add_argument("--num-workers", type=int, default=0, help="image decoding workers")
    embed.set_defaults(func=run_embed)


def _onnx_path(out: str, fmt: str) -> Path:
    path = Path(out)
    if path.suffix.lower() == ".onnx":
        if fmt != "onnx":
            raise ValueError(
                f"{out}: a .onnx OUT is only for --format onnx; give a folder for {fmt}"
            )
        return path
    return path / "model.onnx"


def run_export(args: argparse.Namespace) -> int:
    from sphereface2.export.onnx_export import check_opset, export_onnx
    from sphereface2.export.safetensors_export import export_safetensors
    from sphereface2.models.loading import load_embedding_model

    onnx_out = _onnx_path(args.out, args.format) if args.format != "safetensors" else None
    if onnx_out is not None:
        check_opset(args.opset, args.exporter)
    check_writable_folder(onnx_out.parent if onnx_out else args.out, "the output folder")
    model = load_embedding_model(args.model, "cpu", args.average_last)
    print(f"model: {model.description}", file=sys.stderr)
    if onnx_out is not None:
        result = export_onnx(
            model,
            onnx_out,
            opset=args.opset,
            dynamic_batch=not args.static_batch,
            exporter=args.exporter,
        )
        batch = "dynamic batch" if result["dynamic_batch"] else "batch fixed at 1"
        print(
            f"wrote {result['path']}: ONNX opset {result['opset']} via {result['exporter']}, "
            f"{batch}, input {result['input']['shape']}"
        )
        sizes = ", ".join(str(b) for b in result["checked_batch_sizes"])
        print(
            f"onnxruntime check at batch sizes {sizes}: max abs diff "
            f"{result['max_abs_diff']:.3g} (outputs up to {result['max_abs_output']:.3g})"
        )
    if args.format in ("safetensors", "both"):
        result = export_safetensors(model, args.out)
        print(
            f"wrote {result['weights']} ({result['tensors']} tensors, {result['parameters']} "
            f"parameters) and {result['config']}"
        )
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from sphereface2.export.embeddings import embed_to_files, output_paths
    from sphereface2.models.embed import ProgressPrinter
    from sphereface2.models.loading import load_embedding_model

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    for path in output_paths(args.out).values():  # before the long embedding
        check_writable_file(path, "the embeddings output")
    model = load_embedding_model(args.model, resolve_device(args.device), args.average_last)
    print(f"model: {model.description}", file=sys.stderr)
    summary = embed_to_files(
        model,
        args.data,
        args.out,
        flip=args.flip,
        normalize=args.normalize,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        root=args.root,
        progress=ProgressPrinter("embedding"),
    )
    files = summary["files"]
    print(
        f"wrote {files['npy']} ({summary['rows']} x {summary['dim']} float32; "
        f"{summary['embeddings']}), {files['csv']} and {files['json']} in "
        f"{summary['seconds']:.1f} s"
    )
    return 0
