"""SphereFace2 head speed and memory on CPU: plain vs fused vs the matrix-product floor.

For B = 256 embeddings of d = 512 and K classes, one training step of the head (forward
and backward: loss, gradients of the embeddings, the proxies and the bias) is timed for

    plain          sphereface2.heads.SphereFace2Head (chunk_loss over the (B, K) cosines)
    fused          sphereface2.heads.fused_sphereface2.FusedSphereFace2Head (chunked, one pass)
    official       a head written like the official OpenSphere one (below): one-hot mask,
                   logit matrices and a weighted BCE-with-logits mean over (B, K)
    floor          the three products alone, x W^T, dcos W and dcos^T x, at full (B, K)
                   shape into preallocated outputs: arithmetic only, no allocation
    floor_chunked  the same three products over the fused head's class chunks, also into
                   preallocated buffers: the best the fused head could do at its shapes

``fused:1024`` / ``floor_chunked:1024`` pick a chunk size (default: the memory budget's).

Timing: one fresh process per K runs every method on the same parameters and inputs,
one warm-up step each, then ``--repeats`` rounds that run each method once in turn, so
all methods see the same machine load. The machine is shared (other jobs compete for the
cores), so the table reports the median and the minimum; ratios are of medians from the
same run. The load average at the start and end is written to the JSON.

Memory: a second fresh process per (K, method) with glibc's ``MALLOC_MMAP_THRESHOLD_`` set
to 64 KiB, so every buffer of 64 KiB or more is its own mapping, returned to the system
when freed: the resident set size (RSS) then follows the live tensors (plus small
allocator slack). After a warm-up step the gradients are dropped, the RSS recorded and the
kernel's RSS high-water mark reset (``/proc/self/clear_refs``, 5); one step runs and the
high-water mark is read. "peak extra" = high-water - RSS before the step - the bytes of
the gradients the step leaves behind (proxies, embeddings, bias): the transient memory a
step needs beyond parameters, their gradients and anything else alive before it (an
optimizer state would be). A second step then runs with those gradients kept, so it
accumulates into them (gradient accumulation's later micro-batches, or
``zero_grad(set_to_none=False)``): "extra, grad present" = its high-water - RSS before
it. Both count every allocation, torch's and MKL's. The floor
methods write into buffers allocated before the step, so their extra memory is not
meaningful and not measured. Linux only.

    python benchmarks/head_speed.py                          # K = 8631, 93431, 1000000
    python benchmarks/head_speed.py --classes 93431 --repeats 9 --threads 1
    python benchmarks/head_speed.py --methods plain fused:512 fused:2048 floor_chunked:512

Configurations whose predicted memory exceeds ``--max-gb`` are skipped (and reported).
Prints a table and writes JSON (default benchmarks/results/head_speed.json).
"""

from __future__ import annotations

import argparse
import gc
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
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from bench_common import cpu_name, run_worker, write_report
from sphereface2.heads.base import renormalise_
from sphereface2.heads.fused_sphereface2 import FusedSphereFace2Head
from sphereface2.heads.memory_budget import DEFAULT_BUDGET_BYTES, choose_chunk_size
from sphereface2.heads.sphereface2 import SphereFace2Head

HEADS = ("plain", "fused", "official")
FLOORS = ("floor", "floor_chunked")
# Rough (B, K) float32 buffers alive at the peak, for skipping sizes that cannot fit;
# replaced by the measured value of a smaller K when there is one.
GUESSED_BK_BUFFERS = {"plain": 10.0, "official": 14.0, "fused": 0.0}


class OfficialStyleSphereFace2(nn.Module):
    """SphereFace2-C the way the official code computes it: over dense (B, K) matrices.

    A one-hot label matrix, the positive and negative logit matrices merged through it,
    a per-entry weight matrix lw K / r (lambda or 1 - lambda), and a weighted
    binary-cross-entropy-with-logits mean over all B K entries (equal to lw times the
    batch mean of the per-sample loss). Full gradient through g and the margin.
    """

    def __init__(
        self, weight: nn.Parameter, bias: nn.Parameter, lam=0.7, r=40.0, m=0.4, t=3.0, lw=10.0
    ):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.lam, self.r, self.m, self.t, self.lw = lam, r, m, t, lw

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        renormalise_(self.weight)
        cos = F.normalize(embeddings, dim=1) @ self.weight.t()
        one_hot = torch.zeros_like(cos).scatter_(1, labels.unsqueeze(1), 1.0)
        g = 2.0 * ((cos.clamp(-1, 1) + 1.0) / 2.0).pow(self.t) - 1.0
        positive = self.r * (g - self.m) + self.bias
        negative = self.r * (g + self.m) + self.bias
        logits = one_hot * positive + (1.0 - one_hot) * negative
        scale = self.lw * cos.shape[1] / self.r
        weights = scale * (self.lam * one_hot + (1.0 - self.lam) * (1.0 - one_hot))
        return F.binary_cross_entropy_with_logits(logits, one_hot, weight=weights)


# ------------------------------------------------------------------ one process per job


def _setup(classes: int, batch: int, dim: int, seed: int):
    torch.manual_seed(seed)
    plain = SphereFace2Head(classes, dim, implementation="plain")  # "auto" would go fused
    x = torch.randn(batch, dim, requires_grad=True)
    y = torch.randint(0, classes, (batch,))
    return plain, x, y


def _parse_method(spec: str) -> tuple[str, int | None]:
    name, _, chunk = spec.partition(":")
    if name not in HEADS + FLOORS or (chunk and name not in ("fused", "floor_chunked")):
        raise SystemExit(f"unknown method {spec!r}; use {', '.join(HEADS + FLOORS)}, fused:N")
    return name, int(chunk) if chunk else None


def _resolved_chunk(chunk: int | None, classes: int, batch: int, dim: int) -> int:
    return choose_chunk_size(classes, batch, embedding_dim=dim, chunk_size=chunk)


def _make_step(spec: str, plain: SphereFace2Head, x: Tensor, y: Tensor):
    """A no-argument callable running one step of ``spec``, and the tensors it grads."""
    name, chunk = _parse_method(spec)
    classes, dim = plain.weight.shape
    if name in HEADS:
        if name == "plain":
            head: nn.Module = plain
        elif name == "fused":
            # Built for 2 classes, then given the shared (K, d) proxies: no second copy.
            head = FusedSphereFace2Head(2, dim, chunk_size=chunk)
            head.num_classes = classes
            head.weight, head.bias = plain.weight, plain.bias  # shared, not copied
        else:
            head = OfficialStyleSphereFace2(plain.weight, plain.bias)
        params = (plain.weight, plain.bias, x)

        def step(keep_grads: bool = False) -> float:
            if not keep_grads:
                for p in params:
                    p.grad = None
            loss = head(x, y)
            loss.backward()
            return loss.item()

        return step
    w, xd, batch = plain.weight.detach(), x.detach(), x.shape[0]
    grad_w, grad_x = torch.empty_like(w), torch.empty_like(xd)
    if name == "floor":
        cos = torch.empty(batch, classes)

        def floor() -> float:
            torch.mm(xd, w.t(), out=cos)
            torch.mm(cos, w, out=grad_x)
            torch.mm(cos.t(), xd, out=grad_w)
            return 0.0

        return floor
    size = _resolved_chunk(chunk, classes, batch, dim)
    buf = torch.empty(batch * size)

    def floor_chunked() -> float:
        grad_x.zero_()
        for start in range(0, classes, size):
            stop = min(start + size, classes)
            cos = buf[: batch * (stop - start)].view(batch, stop - start)
            torch.mm(xd, w[start:stop].t(), out=cos)
            grad_x.addmm_(cos, w[start:stop])
            torch.mm(cos.t(), xd, out=grad_w[start:stop])
        return 0.0

    return floor_chunked


def _time_worker(args: argparse.Namespace) -> dict[str, Any]:
    plain, x, y = _setup(args.classes, args.batch, args.dim, args.seed)
    steps = {spec: _make_step(spec, plain, x, y) for spec in args.methods}
    losses = {spec: step() for spec, step in steps.items()}  # warm-up, and a sanity check
    times: dict[str, list[float]] = {spec: [] for spec in steps}
    for _ in range(args.repeats):
        for spec, step in steps.items():
            start = time.perf_counter()
            step()
            times[spec].append(time.perf_counter() - start)
    return {
        "times_s": times,
        "losses": {k: v for k, v in losses.items() if k.split(":")[0] in HEADS},
    }


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def _memory_worker(args: argparse.Namespace) -> dict[str, Any]:
    (spec,) = args.methods
    plain, x, y = _setup(args.classes, args.batch, args.dim, args.seed)
    step = _make_step(spec, plain, x, y)
    step()
    params = (plain.weight, plain.bias, x)
    for p in params:
        p.grad = None
    gc.collect()
    before = _status_kib("VmRSS") * 1024
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
    step()
    peak = _status_kib("VmHWM") * 1024
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    # Again with the gradients of that step kept: the step accumulates into them (the
    # second micro-batch of gradient accumulation, or zero_grad(set_to_none=False)).
    gc.collect()
    before_present = _status_kib("VmRSS") * 1024
    Path("/proc/self/clear_refs").write_text("5")
    step(keep_grads=True)
    peak_present = _status_kib("VmHWM") * 1024
    return {
        "rss_before": before,
        "rss_peak": peak,
        "grad_bytes": grads,
        "peak_extra": peak - before - grads,
        "rss_before_grad_present": before_present,
        "rss_peak_grad_present": peak_present,
        "peak_extra_grad_present": peak_present - before_present,
    }


# ------------------------------------------------------------------ the driver


def _run_worker(
    kind: str, args: argparse.Namespace, classes: int, methods: list[str]
) -> dict[str, Any]:
    repeats = args.large_repeats if classes >= args.large_classes else args.repeats
    cmd = [
        sys.executable, __file__, "--worker", kind, "--classes", str(classes),
        "--batch", str(args.batch), "--dim", str(args.dim), "--threads", str(args.threads),
        "--repeats", str(repeats), "--seed", str(args.seed), "--methods", *methods,
    ]  # fmt: skip
    env = dict(os.environ)
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    if kind == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    return run_worker(cmd, env, args.timeout)


def _predicted_bytes(name: str, classes: int, args: argparse.Namespace, measured: dict) -> float:
    """Parameters + gradients + the method's transient memory (measured at a smaller K)."""
    fixed = 2 * classes * args.dim * 4
    per_bk = GUESSED_BK_BUFFERS.get(name, 1.0) * 4
    smaller = [k for k in measured.get(name, {}) if k < classes]
    if smaller:
        k = max(smaller)
        per_bk = measured[name][k] / (args.batch * k)
    return fixed + per_bk * args.batch * classes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[8631, 93431, 1_000_000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--methods", nargs="+", default=["plain", "fused", "official", "floor", "floor_chunked"]
    )
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "unset"],
        help="OpenMP idle threads sleep (PASSIVE) or spin; spinning is ruinous on a busy machine",
    )
    parser.add_argument("--large-classes", type=int, default=200_000)
    parser.add_argument("--large-repeats", type=int, default=2, help="repeats from --large-classes")
    parser.add_argument("--max-gb", type=float, default=12.0, help="skip larger predicted peaks")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    parser.add_argument("--no-memory", action="store_true", help="time only")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "head_speed.json"
    )
    parser.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for spec in args.methods:
        _parse_method(spec)
    if args.worker:
        torch.set_num_threads(args.threads)
        args.classes = args.classes[0]
        worker = _time_worker if args.worker == "time" else _memory_worker
        print(json.dumps(worker(args)))
        return

    load_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    measured: dict[str, dict[int, float]] = {}
    for classes in sorted(args.classes):
        keep, skipped = [], {}
        for spec in args.methods:
            need = _predicted_bytes(spec.split(":")[0], classes, args, measured)
            if need <= args.max_gb * 2**30:
                keep.append(spec)
            else:
                skipped[spec] = need
        print(f"K = {classes}: timing {', '.join(keep)} ...", file=sys.stderr, flush=True)
        timing = _run_worker("time", args, classes, keep) if keep else {}
        for spec in args.methods:
            row: dict[str, Any] = {"classes": classes, "method": spec}
            name, chunk = _parse_method(spec)
            if name in ("fused", "floor_chunked"):
                row["chunk_size"] = _resolved_chunk(chunk, classes, args.batch, args.dim)
            if spec in skipped:
                row["skipped"] = (
                    f"predicted peak {skipped[spec] / 2**30:.1f} GiB > --max-gb {args.max_gb}"
                )
            elif "error" in timing:
                row["skipped"] = timing["error"]
            else:
                times = timing["times_s"][spec]
                row.update(times_s=times, median_s=statistics.median(times), min_s=min(times))
                row["loss"] = timing["losses"].get(spec)
                if not args.no_memory and name in HEADS:
                    mem = _run_worker("memory", args, classes, [spec])
                    row["memory"] = mem
                    if "peak_extra" in mem:
                        measured.setdefault(name, {})[classes] = mem["peak_extra"]
            rows.append(row)
    report = {
        "benchmark": "head_speed",
        "config": {
            "batch": args.batch,
            "dim": args.dim,
            "threads": args.threads,
            "repeats": args.repeats,
            "large_classes": args.large_classes,
            "large_repeats": args.large_repeats,
            "omp_wait_policy": args.omp_wait_policy,
            "dtype": "float32",
            "device": "cpu",
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": cpu_name(),
            "cpus": os.cpu_count(),
            "chunk_budget_bytes": DEFAULT_BUDGET_BYTES,
        },  # fmt: skip
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": rows,
        "ratios": _ratios(rows),
    }
    write_report(report, args.out, _table(rows, report))


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per K: plain/fused and official/fused time and memory, fused/floor time."""
    out: dict[str, dict[str, float]] = {}
    for classes in sorted({r["classes"] for r in rows}):
        by = {r["method"]: r for r in rows if r["classes"] == classes and "median_s" in r}
        fused = by.get("fused")
        if fused is None:
            continue
        ratios: dict[str, float] = {}
        losses = [r["loss"] for r in by.values() if r.get("loss") is not None]
        ratios["max_loss_rel_diff"] = (max(losses) - min(losses)) / abs(fused["loss"])
        for other in ("plain", "official"):
            if other in by:
                ratios[f"{other}_time_over_fused"] = by[other]["median_s"] / fused["median_s"]
                mem_o = by[other].get("memory", {}).get("peak_extra")
                mem_f = fused.get("memory", {}).get("peak_extra")
                if mem_o and mem_f is not None:
                    ratios[f"fused_extra_memory_over_{other}"] = mem_f / mem_o
        for floor in FLOORS:
            if floor in by:
                ratios[f"fused_time_over_{floor}"] = fused["median_s"] / by[floor]["median_s"]
        out[str(classes)] = ratios
    return out


def _table(rows: list[dict[str, Any]], report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        f"B = {cfg['batch']}, d = {cfg['dim']}, threads = {cfg['threads']}, "
        f"{cfg['repeats']} repeats, {cfg['processor']}; load average "
        f"{report['load_average']['start'][0]:.1f} -> {report['load_average']['end'][0]:.1f}",
        f"{'K':>9} {'method':<20} {'median s':>9} {'min s':>8} {'x plain':>8} {'x floor':>8} "
        f"{'peak extra MiB':>15} {'extra, grad present':>20}",
    ]
    for classes in sorted({r["classes"] for r in rows}):
        by = {r["method"]: r for r in rows if r["classes"] == classes}
        base = by.get("plain", {}).get("median_s")
        floor = by.get("floor", {}).get("median_s")
        for spec, row in by.items():
            label = spec + (
                f" ({row['chunk_size']})" if "chunk_size" in row and ":" not in spec else ""
            )
            if "median_s" not in row:
                lines.append(f"{classes:>9} {label:<20} skipped: {row['skipped']}")
                continue
            med = row["median_s"]
            extra = row.get("memory", {}).get("peak_extra")
            present = row.get("memory", {}).get("peak_extra_grad_present")
            lines.append(
                f"{classes:>9} {label:<20} {med:>9.3f} {row['min_s']:>8.3f} "
                f"{med / base if base else float('nan'):>8.2f} "
                f"{med / floor if floor else float('nan'):>8.2f} "
                f"{extra / 2**20 if extra is not None else float('nan'):>15.1f} "
                f"{present / 2**20 if present is not None else float('nan'):>20.1f}"
            )
    for classes, ratios in report["ratios"].items():
        text = ", ".join(f"{k} {v:.3g}" for k, v in ratios.items())
        lines.append(f"K = {classes}: {text}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
