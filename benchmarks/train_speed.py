"""Training throughput (images/s) of SFNet-20/64 and IResNet-50/100 with the SphereFace2 head.

One training step is what the trainer does per iteration without the data loader:

    zero_grad -> backbone forward -> SphereFace2 head loss -> backward -> SGD step

with ``torch.optim.SGD(momentum=0.9, weight_decay=5e-4)`` over the backbone's and the
head's parameters. The input is one batch of random images (B, 3, H, W) and random labels
in [0, K), made once on the device and reused every step: data loading (decode, transform,
host-to-device copy) is excluded here and measured by benchmarks/data_loader.py.

Each model runs in its own fresh process: ``--warmup`` untimed steps (they also create the
momentum buffers and, on CUDA, let cuDNN pick its algorithms), then ``--steps`` timed steps.
The table reports the median and the minimum step time; img/s = batch / median. On CUDA
every timed step is bracketed by ``torch.cuda.synchronize()``.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` over the whole run (parameters,
gradients, momentum, activations and the head's buffers; the caching allocator may reserve
more). On the CPU, the worker process's resident-set high-water mark (``VmHWM``): the whole
process, Python and torch's libraries included. Linux only for the CPU figure.

Defaults depend on ``--device``:

    cpu   B = 8,   K = 8,631 (VGGFace2),  float32, 2 warm-up + 10 timed steps, all cores
    cuda  B = 512, K = 93,431 (MS1MV2),   bf16 autocast, 5 warm-up + 20 timed steps

``--amp fp16`` uses float16 autocast with a GradScaler (CUDA only), ``--amp none`` float32.
``--head auto`` (default) lets the head pick its implementation (fused from B x K >= 2^18
entries), ``plain`` or ``fused`` force one; the table shows the one that ran. GMACs are
the backbone's multiply-accumulates per image (forward); a training step costs about three
times that.

    python benchmarks/train_speed.py                                # CPU, ~3-5 min on 2 cores
    python benchmarks/train_speed.py --models sfnet20 --steps 20 --threads 1   # any backbone name
    python benchmarks/train_speed.py --device cuda --channels-last --head fused

On a shared machine the CPU numbers move with the load; the load average at the start and
the end is written to the JSON. Prints a table and writes JSON (default
benchmarks/results/train_speed.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench_common import cpu_name, run_worker, write_report
from sphereface2.backbones import BACKBONES, build_backbone, count_macs, count_parameters
from sphereface2.heads import build_head
from sphereface2.heads.fused_function import prefer_fused

MODELS = ("sfnet20", "sfnet64", "iresnet50", "iresnet100")
HEAD_CHOICES = ("auto", "plain", "fused")
AMP_CHOICES = ("none", "bf16", "fp16")
# Per-device defaults for the options left unset on the command line.
DEVICE_DEFAULTS = {
    "cpu": {"batch": 8, "classes": 8631, "amp": "none", "warmup": 2, "steps": 10},
    "cuda": {"batch": 512, "classes": 93431, "amp": "bf16", "warmup": 5, "steps": 20},
}
MOMENTUM, WEIGHT_DECAY, LEARNING_RATE = 0.9, 5e-4, 0.1


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left as None with the device's defaults, and check the rest."""
    for key, value in DEVICE_DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False on this machine")
    if args.amp == "fp16" and args.device != "cuda":
        raise SystemExit("--amp fp16 needs --device cuda (use bf16 or none on the CPU)")
    minimum = {"batch": 1, "classes": 2, "steps": 1, "threads": 1, "embedding_dim": 1, "warmup": 0}
    for name, low in minimum.items():
        if getattr(args, name) < low:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"{flag} must be >= {low}, got {getattr(args, name)}")
    return args


def autocast_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype for ``--amp`` (None: float32, no autocast)."""
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def head_implementation(choice: str, batch: int, classes: int, dim: int) -> str:
    """The implementation the SphereFace2 head runs for ``choice`` at this batch and K."""
    probe = torch.empty(batch, dim, device="meta")
    return "fused" if prefer_fused(choice, probe, classes) else "plain"


# ------------------------------------------------------------------ one process per model


class TrainStep:
    """One SGD training step of backbone + SphereFace2 head on a fixed synthetic batch."""

    def __init__(self, model: str, args: argparse.Namespace, device: torch.device) -> None:
        torch.manual_seed(args.seed)
        size = (args.input_size, args.input_size)
        self.backbone = build_backbone(
            model, embedding_dim=args.embedding_dim, width=args.width, input_size=size
        )
        self.head = build_head(
            "sphereface2", args.classes, args.embedding_dim, implementation=args.head
        )
        self.macs = count_macs(self.backbone, size)  # on the CPU, before moving
        memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
        self.backbone.to(device, memory_format=memory_format)
        self.head.to(device)
        params = [p for m in (self.backbone, self.head) for p in m.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            params, lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
        )
        generator = torch.Generator().manual_seed(args.seed + 1)
        images = torch.randn(args.batch, 3, *size, generator=generator)
        labels = torch.randint(0, args.classes, (args.batch,), generator=generator)
        self.images = images.to(device).contiguous(memory_format=memory_format)
        self.labels = labels.to(device)
        self.device = device
        self.amp_dtype = autocast_dtype(args.amp)
        # A scaler only for float16, as the trainer does; disabled it is a pass-through.
        self.scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
        self.backbone.train()
        self.head.train()

    def __call__(self) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        autocast = (
            contextlib.nullcontext()
            if self.amp_dtype is None
            else torch.autocast(self.device.type, dtype=self.amp_dtype)
        )
        with autocast:
            loss = self.head(self.backbone(self.images), self.labels)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


def run_model(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build ``model`` with the head, warm up, time ``args.steps`` steps; a result row."""
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    step = TrainStep(model, args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup):
        step()
    _sync(device)
    times, loss = [], None
    for _ in range(args.steps):
        _sync(device)
        start = time.perf_counter()
        loss = step()
        _sync(device)
        times.append(time.perf_counter() - start)
    loss_value = float(loss)
    if not torch.isfinite(torch.tensor(loss_value)):
        raise RuntimeError(f"{model}: non-finite loss {loss_value} after {args.steps} steps")
    median = statistics.median(times)
    row: dict[str, Any] = {
        "model": model,
        "head_implementation": head_implementation(
            args.head, args.batch, args.classes, args.embedding_dim
        ),
        "backbone_parameters": count_parameters(step.backbone),
        "head_parameters": count_parameters(step.head),
        "backbone_gmacs_per_image": step.macs / 1e9,
        "times_s": times,
        "median_s": median,
        "min_s": min(times),
        "images_per_s": args.batch / median,
        "last_loss": loss_value,
    }
    if device.type == "cuda":
        row["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        row["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        row["memory_kind"] = "cuda max_memory_allocated"
    else:
        peak = _status_kib("VmHWM")
        row["peak_memory_bytes"] = None if peak is None else peak * 1024
        row["memory_kind"] = "process peak RSS (VmHWM)"
    return row


# ------------------------------------------------------------------ the driver


def _worker_command(model: str, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable, __file__, "--worker", model, "--device", args.device,
        "--batch", str(args.batch), "--classes", str(args.classes),
        "--embedding-dim", str(args.embedding_dim), "--input-size", str(args.input_size),
        "--width", str(args.width), "--head", args.head, "--amp", args.amp,
        "--warmup", str(args.warmup), "--steps", str(args.steps),
        "--threads", str(args.threads), "--seed", str(args.seed),
    ]  # fmt: skip
    return cmd + (["--channels-last"] if args.channels_last else [])


def _run_worker(model: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    return {"model": model, **run_worker(_worker_command(model, args), env, args.timeout)}


def _device_name(device: str) -> str:
    return torch.cuda.get_device_name(0) if device == "cuda" else cpu_name()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=list(MODELS), choices=sorted(BACKBONES.names())
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, help="images per step (cpu 8, cuda 512)")
    parser.add_argument("--classes", type=int, help="K (cpu 8631, cuda 93431)")
    parser.add_argument("--embedding-dim", type=int, default=512)
    parser.add_argument("--input-size", type=int, default=112, help="square input side")
    parser.add_argument("--width", type=float, default=1.0, help="backbone channel multiplier")
    parser.add_argument("--head", choices=HEAD_CHOICES, default="auto")
    parser.add_argument("--amp", choices=AMP_CHOICES, help="autocast (cpu none, cuda bf16)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--warmup", type=int, help="untimed steps (cpu 2, cuda 5)")
    parser.add_argument("--steps", type=int, help="timed steps (cpu 10, cuda 20)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "unset"],
        help="OpenMP idle threads sleep (PASSIVE) or spin; spinning is ruinous on a busy machine",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per model")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "train_speed.json"
    )
    parser.add_argument("--worker", choices=sorted(BACKBONES.names()), help=argparse.SUPPRESS)
    return resolve_defaults(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(run_model(args.worker, args)))
        return

    load_start = os.getloadavg()
    rows = []
    for model in args.models:
        print(f"{model}: {args.warmup} warm-up + {args.steps} timed steps ...", file=sys.stderr)
        rows.append(_run_worker(model, args))
    report = {
        "benchmark": "train_speed",
        "config": {
            "device": args.device,
            "device_name": _device_name(args.device),
            "batch": args.batch,
            "classes": args.classes,
            "embedding_dim": args.embedding_dim,
            "input_size": [args.input_size, args.input_size],
            "width": args.width,
            "head": args.head,
            "amp": args.amp,
            "channels_last": args.channels_last,
            "warmup": args.warmup,
            "steps": args.steps,
            "threads": args.threads,
            "omp_wait_policy": args.omp_wait_policy,
            "optimizer": {
                "name": "SGD",
                "lr": LEARNING_RATE,
                "momentum": MOMENTUM,
                "weight_decay": WEIGHT_DECAY,
            },
            "data": "synthetic tensors on the device; loading excluded (benchmarks/data_loader.py)",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "machine": platform.machine(),
            "processor": cpu_name(),
            "cpus": os.cpu_count(),
        },
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": rows,
    }
    write_report(report, args.out, table(report))


def table(report: dict[str, Any]) -> str:
    """The report as a text table, one row per model."""
    cfg = report["config"]
    load = report["load_average"]
    lines = [
        f"{cfg['device']} ({cfg['device_name']}), B = {cfg['batch']}, K = {cfg['classes']}, "
        f"{cfg['input_size'][0]}x{cfg['input_size'][1]}, amp {cfg['amp']}, "
        f"{'channels_last, ' if cfg['channels_last'] else ''}threads = {cfg['threads']}, "
        f"{cfg['warmup']} warm-up + {cfg['steps']} timed steps; load average "
        f"{load['start'][0]:.1f} -> {load['end'][0]:.1f}",
        f"{'model':<11} {'head':<6} {'params M':>8} {'head M':>7} {'GMACs':>6} "
        f"{'median s':>9} {'min s':>8} {'img/s':>8} {'peak MiB':>9}",
    ]
    for row in report["results"]:
        if "error" in row:
            lines.append(f"{row['model']:<11} failed: {row['error']}")
            continue
        peak = row.get("peak_memory_bytes")
        lines.append(
            f"{row['model']:<11} {row['head_implementation']:<6} "
            f"{row['backbone_parameters'] / 1e6:>8.2f} {row['head_parameters'] / 1e6:>7.2f} "
            f"{row['backbone_gmacs_per_image']:>6.2f} {row['median_s']:>9.3f} "
            f"{row['min_s']:>8.3f} {row['images_per_s']:>8.2f} "
            f"{peak / 2**20 if peak is not None else float('nan'):>9.0f}"
        )
    kind = next((r["memory_kind"] for r in report["results"] if "memory_kind" in r), None)
    if kind:
        lines.append(f"peak MiB: {kind}; img/s = batch / median step time")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
