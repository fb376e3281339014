"""Data-loading throughput: JPEG decode + training transform, image folder vs RecordIO.

Generates a synthetic set of face-sized JPEGs in a temporary folder, stores the same
bytes both as an image folder (``root/<identity>/<n>.jpg``) and as an MS1M-layout
RecordIO file, then times full passes of a ``DataLoader`` over each source with the
paper's training transform (normalise to [-1, 1] + random horizontal flip) for each
worker count. Reports images/s overall and per worker (worker count 0 = the main
process, counted as one), plus the time to the first batch (worker start-up included).

    python benchmarks/data_loader.py                      # ~10-30 s on 2 cores
    python benchmarks/data_loader.py --images 20000 --workers 0 2 4 8

Prints a table and writes JSON (default benchmarks/results/data_loader.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from sphereface2.data.decode import encode_jpeg
from sphereface2.data.image_folder import ImageFolderDataset
from sphereface2.data.packing import write_recordio
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.data.transforms import train_transform


def synthetic_faces(
    count: int, size: int, identities: int, quality: int, seed: int
) -> list[tuple[bytes, int]]:
    """``count`` JPEGs of smooth random images with mild noise (real faces compress alike).

    Pure noise would be far larger and slower to decode than a real aligned face; a
    low-frequency field plus a little noise gives about 8 KiB per 112x112 JPEG at quality
    95, close to InsightFace's aligned MS1M crops (about 7 KiB in the test fixtures).
    """
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))
        noise = rng.normal(0, 3, size=smooth.shape)
        rgb = np.clip(smooth + noise, 0, 255).astype(np.uint8)
        samples.append((encode_jpeg(rgb, quality), i % identities))
    return samples


def write_sources(samples: list[tuple[bytes, int]], root: Path) -> tuple[Path, Path]:
    """The same JPEG bytes as an image folder and as a RecordIO set; returns both paths."""
    folder = root / "folder"
    for n, (data, label) in enumerate(samples):
        identity = folder / f"id{label:05d}"
        identity.mkdir(parents=True, exist_ok=True)
        (identity / f"{n:07d}.jpg").write_bytes(data)
    prefix = root / "rec" / "train"
    write_recordio(prefix, samples, encode=True)  # JPEG bytes are stored unchanged
    return folder, prefix.with_suffix(".rec")


def time_loader(
    dataset: Dataset, workers: int, batch_size: int, epochs: int, seed: int
) -> dict[str, float]:
    """Median images/s over ``epochs`` full passes, first-batch latency excluded from it."""
    rates, first_batch, epoch_s = [], [], []
    for epoch in range(epochs):
        generator = torch.Generator().manual_seed(seed + epoch)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            generator=generator,
            drop_last=False,
        )
        start = time.perf_counter()
        seen = 0
        first_at = None
        first_count = 0
        for images, _labels in loader:
            seen += images.shape[0]
            if first_at is None:
                first_at = time.perf_counter()
                first_count = seen
        end = time.perf_counter()
        assert first_at is not None and seen == len(dataset)
        rates.append((seen - first_count) / max(end - first_at, 1e-9))
        first_batch.append(first_at - start)
        epoch_s.append(end - start)
    rate = statistics.median(rates)
    return {
        "images_per_s": rate,
        "images_per_s_per_worker": rate / max(workers, 1),
        "first_batch_s": statistics.median(first_batch),
        "epoch_s": statistics.median(epoch_s),
    }


def time_stages(dataset: Any, transform: Any, count: int) -> dict[str, float]:
    """Main-process milliseconds per image for read + decode and for the transform alone."""
    count = min(count, len(dataset))
    transform_before = dataset.transform
    dataset.transform = lambda rgb: rgb  # read and decode only
    try:
        start = time.perf_counter()
        decoded = [dataset[i][0] for i in range(count)]
        decode_s = time.perf_counter() - start
    finally:
        dataset.transform = transform_before
    start = time.perf_counter()
    for rgb in decoded:
        transform(rgb)
    transform_s = time.perf_counter() - start
    return {"decode_ms": 1e3 * decode_s / count, "transform_ms": 1e3 * transform_s / count}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="synthetic images (2000)")
    parser.add_argument("--size", type=int, default=112, help="square image side (112)")
    parser.add_argument("--identities", type=int, default=100, help="classes (100)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed passes per setting")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        default="benchmarks/results/data_loader.json",
        help="JSON results path (default: benchmarks/results/data_loader.json)",
    )
    args = parser.parse_args(argv)
    if args.images < 1 or args.size < 1 or args.identities < 1 or args.epochs < 1:
        parser.error("--images, --size, --identities and --epochs must be >= 1")
    if min(args.workers) < 0:
        parser.error("--workers must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The main process's intra-op threads would compete with the workers on small machines.
    torch.set_num_threads(1)
    transform = train_transform()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sf2_loader_bench_") as tmp:
        start = time.perf_counter()
        samples = synthetic_faces(args.images, args.size, args.identities, args.quality, args.seed)
        folder, rec = write_sources(samples, Path(tmp))
        mean_kb = sum(len(data) for data, _ in samples) / len(samples) / 1024
        print(
            f"{args.images} JPEGs {args.size}x{args.size} (mean {mean_kb:.1f} KiB) written in "
            f"{time.perf_counter() - start:.1f} s",
            file=sys.stderr,
        )
        sources = {
            "image_folder": ImageFolderDataset(folder, transform=transform),
            "recordio": RecordIODataset(rec, transform=transform),
        }
        stages = {
            name: time_stages(dataset, transform, count=1000) for name, dataset in sources.items()
        }
        for name, dataset in sources.items():
            for workers in args.workers:
                timing = time_loader(dataset, workers, args.batch_size, args.epochs, args.seed)
                results.append({"source": name, "workers": workers, **timing})
                print(
                    f"  {name} workers={workers}: {timing['images_per_s']:.0f} images/s",
                    file=sys.stderr,
                )
        sources["recordio"].close()

    header = f"{'source':<13} {'workers':>7} {'images/s':>9} {'per worker':>10} {'1st batch s':>11}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['source']:<13} {r['workers']:>7} {r['images_per_s']:>9.0f} "
            f"{r['images_per_s_per_worker']:>10.0f} {r['first_batch_s']:>11.3f}"
        )
    for name, stage in stages.items():
        print(
            f"{name}: read+decode {stage['decode_ms']:.3f} ms/image, "
            f"transform {stage['transform_ms']:.3f} ms/image (main process)"
        )
    record = {
        "benchmark": "data_loader",
        "settings": {
            "images": args.images,
            "size": args.size,
            "identities": args.identities,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "quality": args.quality,
            "mean_jpeg_bytes": round(mean_kb * 1024),
            "transform": repr(transform),
            "main_process_torch_threads": 1,
        },
        "environment": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "stages_main_process": stages,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
