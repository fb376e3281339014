"""Partial FC (sampled CosFace) against exact CosFace and the fused exact SphereFace2 head.

For B embeddings of d dimensions and K classes, one training step of the head (forward and
backward: the loss and the gradients of the embeddings and the proxies) is timed and its
memory measured for

    cosface_sampled  CosFaceHead(sample_rate=R): the cross-entropy over every positive and
                     negatives drawn uniformly, max(P, ceil(R K)) classes (Partial FC)
    cosface          CosFaceHead: the exact cross-entropy over all K classes, (B, K) logits
    sphereface2      the fused SphereFace2 head: exact over all K classes, chunked, never
                     holding the (B, K) matrix

Each method runs in its own fresh process (so the allocator's state and the proxies of one
do not inflate another): one warm-up step, then ``--repeats`` measured steps. Memory is
measured as in ``head_speed.py`` (whose /proc reader is reused): glibc's
``MALLOC_MMAP_THRESHOLD_`` at 64 KiB makes the resident set follow the live tensors; before
each step the gradients are dropped, the RSS recorded and its high-water mark reset; after
it "peak extra" = high-water - RSS before - the bytes of the gradients the step leaves
(which include the sampled head's dense (K, d) proxy gradient, zero outside the sample).

    python benchmarks/partial_fc.py                     # K = 10^6, d = 512, B = 256
    python benchmarks/partial_fc.py --classes 100000 --repeats 3

Prints a table and writes JSON (default benchmarks/results/partial_fc.json). Linux only.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench_common import cpu_name, run_worker, write_report
from head_speed import _status_kib
from sphereface2.heads import build_head

METHODS = ("cosface_sampled", "cosface", "sphereface2")


def _build(method: str, classes: int, dim: int, rate: float) -> torch.nn.Module:
    if method == "cosface_sampled":
        return build_head("cosface", classes, dim, sample_rate=rate)
    if method == "cosface":
        return build_head("cosface", classes, dim)
    return build_head("sphereface2_fused", classes, dim)


def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """One fresh process: build, warm up, then measure ``repeats`` steps."""
    torch.manual_seed(args.seed)
    head = _build(args.method, args.classes, args.dim, args.sample_rate)
    x = torch.randn(args.batch, args.dim, requires_grad=True)
    y = torch.randint(0, args.classes, (args.batch,))
    params = [*head.parameters(), x]

    def step() -> float:
        loss = head(x, y)
        loss.backward()
        return loss.item()

    step()
    times, extras, peaks, losses = [], [], [], []
    for _ in range(args.repeats):
        for p in params:
            p.grad = None
        gc.collect()
        before = _status_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
        start = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - start)
        peak = _status_kib("VmHWM") * 1024
        grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
        extras.append(peak - before - grads)
        peaks.append(peak)
    sampled = getattr(head, "last_sampled_classes", None)
    return {
        "times_s": times,
        "peak_extra_bytes": extras,
        "peak_rss_bytes": peaks,
        "parameter_bytes": sum(p.numel() * p.element_size() for p in head.parameters()),
        "losses": losses,
        "classes_used": args.classes if sampled is None else int(sampled.numel()),
    }


def _run_worker(args: argparse.Namespace, method: str, classes: int) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--worker", "--method", method, "--classes", str(classes),
        "--batch", str(args.batch), "--dim", str(args.dim), "--threads", str(args.threads),
        "--repeats", str(args.repeats), "--seed", str(args.seed),
        "--sample-rate", str(args.sample_rate),
    ]  # fmt: skip
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MALLOC_MMAP_THRESHOLD_=str(64 * 1024))
    started = time.perf_counter()
    result = run_worker(cmd, env, args.timeout)
    if "error" not in result:
        result["process_s"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sample-rate", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per process")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "partial_fc.json"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        torch.set_num_threads(args.threads)
        args.classes = args.classes[0]
        print(json.dumps(_worker(args)))
        return

    load_start = os.getloadavg()
    rows = []
    for classes in args.classes:
        for method in args.methods:
            print(f"K = {classes}: {method} ...", file=sys.stderr, flush=True)
            row: dict[str, Any] = {"classes": classes, "method": method}
            result = _run_worker(args, method, classes)
            row.update(result)
            if "times_s" in result:
                row["median_s"] = statistics.median(result["times_s"])
                row["peak_extra_max_bytes"] = max(result["peak_extra_bytes"])
            rows.append(row)
    report = {
        "benchmark": "partial_fc",
        "config": {
            "batch": args.batch,
            "dim": args.dim,
            "sample_rate": args.sample_rate,
            "threads": args.threads,
            "repeats": args.repeats,
            "seed": args.seed,
            "dtype": "float32",
            "device": "cpu",
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": cpu_name(),
            "cpus": os.cpu_count(),
        },
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": rows,
    }
    write_report(report, args.out, _table(report))


def _table(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"B = {cfg['batch']}, d = {cfg['dim']}, sample rate {cfg['sample_rate']:g}, "
        f"threads = {cfg['threads']}, {cfg['repeats']} measured steps, {cfg['processor']}; "
        f"load average {report['load_average']['start'][0]:.1f} -> "
        f"{report['load_average']['end'][0]:.1f}",
        f"{'K':>9} {'method':<16} {'classes':>9} {'median s':>9} {'x exact':>8} "
        f"{'peak extra MiB':>15} {'params MiB':>11}",
    ]
    rows = report["results"]
    for classes in sorted({r["classes"] for r in rows}):
        by = {r["method"]: r for r in rows if r["classes"] == classes}
        exact = by.get("cosface", {}).get("median_s")
        for method, row in by.items():
            if "median_s" not in row:
                lines.append(f"{classes:>9} {method:<16} failed: {row.get('error')}")
                continue
            ratio = row["median_s"] / exact if exact else float("nan")
            lines.append(
                f"{classes:>9} {method:<16} {row['classes_used']:>9} {row['median_s']:>9.3f} "
                f"{ratio:>8.2f} {row['peak_extra_max_bytes'] / 2**20:>15.1f} "
                f"{row['parameter_bytes'] / 2**20:>11.1f}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
