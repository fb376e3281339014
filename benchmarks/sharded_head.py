"""The class-sharded SphereFace2 head over 1, 2 and 4 Gloo processes: time and memory per rank.

A fixed global batch of B = 256 embeddings of d = 512 (random, labels uniform in [0, K))
is split evenly over the ranks; each rank holds only its shard of the K = 93,431 class
proxies (``build_sharded_head(..., init="shard")``: K / world rows of d floats), gathers the
global batch inside the head's forward, scores it against its own classes, and
back-propagates (the backward returns each rank its own embedding rows' gradients). One
step = forward + backward of the head alone, no optimizer. ``--heads plain`` and ``fused``
build ``sphereface2`` with ``implementation="plain"`` (the (B, K_local) cosines and logits
with autograd) or ``"fused"`` (the chunked pass that never holds a (B, K_local) buffer;
what ``"auto"``, the default, picks at these sizes).

The launcher here starts the ranks the way torchrun does: one fresh Python process per rank
with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT in its
environment, set up with ``sphereface2.distributed.distributed_session`` (Gloo), each with
``--threads-per-rank`` torch threads (default 1). A world of 1 runs without a process group:
the sharded head is then the plain head and nothing is communicated.

Timing: one launch per (head, world): one warm-up step, then ``--repeats`` steps, each
started after a barrier. A step's time is the slowest rank's; the table gives the median
and the minimum over steps, and the ratio of medians against a world of 1.

Memory: a second launch per (head, world) with glibc's ``MALLOC_MMAP_THRESHOLD_`` at 64 KiB
in every rank, so each buffer of 64 KiB or more is its own mapping, returned when freed and
the resident set size (RSS) follows the live tensors (as in benchmarks/head_speed.py).
After a warm-up step the gradients are dropped, the RSS recorded, the kernel's high-water
mark reset (``/proc/self/clear_refs``, 5), one step run and the high-water mark read.
"peak extra" = high-water - RSS before - the bytes of the gradients the step leaves
(the shard's proxy rows, the bias, the local embeddings): the transient memory a step needs
beyond what lives across steps. Per rank, the memory that lives across steps is the shard's
parameters ("shard MiB") plus the same again for their gradient (plus optimizer state in
training). The table gives the largest rank's value. Linux only.

On a machine with fewer cores than world x threads-per-rank (4 processes on 2 cores, say)
the ranks share cores, so the time cannot scale there: the CPU measurement is about memory
per rank; time scaling needs one core (or GPU) per rank. The output says which worlds were
oversubscribed.

    python benchmarks/sharded_head.py                         # ~3-5 min on 2 cores
    python benchmarks/sharded_head.py --worlds 1 2 --heads fused --classes 1000000

Prints a table and writes JSON (default benchmarks/results/sharded_head.json).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_common import cpu_name, write_report

if TYPE_CHECKING:
    from torch import Tensor

# torch and the library are imported inside the rank functions only: the launcher just
# starts rank processes and reads their output, and saves torch's start-up (~2 s a process).

IMPLEMENTATIONS = ("plain", "fused")
MMAP_THRESHOLD = 64 * 1024
MINIMUMS = {"classes": 2, "batch": 1, "dim": 1, "repeats": 1, "threads_per_rank": 1}


# ------------------------------------------------------------------ inside one rank


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def local_batch(
    batch: int, dim: int, classes: int, rank: int, world: int, seed: int
) -> tuple[Tensor, Tensor]:
    """This rank's rows of one global batch that is the same for every world size."""
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    embeddings = torch.randn(batch, dim, generator=generator)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    rows = torch.tensor_split(torch.arange(batch), world)[rank]
    return embeddings[rows].clone().requires_grad_(True), labels[rows].clone()


def rank_main(args: argparse.Namespace) -> dict[str, Any]:
    """One rank of a ``--worker time|memory`` launch; returns what the parent aggregates."""
    import torch

    from sphereface2.distributed import barrier, distributed_session
    from sphereface2.heads.sharded import build_sharded_head

    torch.set_num_threads(args.threads_per_rank)
    with distributed_session("cpu", timeout_s=args.collective_timeout) as ctx:
        head = build_sharded_head(
            "sphereface2",
            args.classes,
            args.dim,
            init="shard",
            seed=args.seed,
            implementation=args.head,
        )
        x, y = local_batch(args.batch, args.dim, args.classes, ctx.rank, ctx.world_size, args.seed)
        tensors = [*head.parameters(), x]

        def step() -> Tensor:
            for tensor in tensors:
                tensor.grad = None
            loss = head(x, y)
            loss.backward()
            return loss.detach()

        loss = step()  # warm-up
        out: dict[str, Any] = {
            "rank": ctx.rank,
            "world": ctx.world_size,
            "classes": [head.class_start, head.class_end],
            "param_bytes": sum(p.numel() * p.element_size() for p in head.parameters()),
            "local_batch": x.shape[0],
            "torch": torch.__version__,
        }
        if args.worker == "time":
            times = []
            for _ in range(args.repeats):
                barrier()
                start = time.perf_counter()
                loss = step()
                times.append(time.perf_counter() - start)
            out["times_s"] = times
        else:
            for tensor in tensors:
                tensor.grad = None
            gc.collect()
            barrier()
            before = _status_kib("VmRSS") * 1024
            Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark
            loss = step()
            peak = _status_kib("VmHWM") * 1024
            grads = sum(
                t.grad.numel() * t.grad.element_size() for t in tensors if t.grad is not None
            )
            out.update(rss_before=before, rss_peak=peak, grad_bytes=grads)
            out["peak_extra"] = peak - before - grads
            barrier()  # nobody leaves while another rank still measures
        out["loss"] = float(loss)
        return out


# ------------------------------------------------------------------ the launcher


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_command(kind: str, head: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, __file__, "--worker", kind, "--heads", head,
        "--classes", str(args.classes), "--batch", str(args.batch), "--dim", str(args.dim),
        "--repeats", str(args.repeats), "--seed", str(args.seed),
        "--threads-per-rank", str(args.threads_per_rank),
        "--collective-timeout", str(args.collective_timeout),
    ]  # fmt: skip


def launch(kind: str, head: str, world: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start ``world`` rank processes torchrun-style and return their results in rank order.

    A rank that fails (or the whole launch passing ``args.timeout``) stops the others and
    raises RuntimeError with that rank's last stderr lines.
    """
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        procs, logs = [], []
        for rank in range(world):
            env = dict(os.environ)
            env.update(
                RANK=str(rank),
                WORLD_SIZE=str(world),
                LOCAL_RANK=str(rank),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
            )
            if args.omp_wait_policy != "unset":
                env["OMP_WAIT_POLICY"] = args.omp_wait_policy
            if kind == "memory":
                env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
            stdout = open(Path(tmp) / f"rank{rank}.out", "w+")  # noqa: SIM115 (closed below)
            stderr = open(Path(tmp) / f"rank{rank}.err", "w+")  # noqa: SIM115
            logs.append((stdout, stderr))
            cmd = _rank_command(kind, head, args)
            procs.append(subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, text=True))
        try:
            failure = _wait_all(procs, logs, args.timeout)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        results = []
        for stdout, stderr in logs:
            stdout.seek(0)
            text = stdout.read()
            stdout.close()
            stderr.close()
            if failure is None:
                results.append(json.loads(text.strip().splitlines()[-1]))
        if failure is not None:
            raise RuntimeError(f"{head} head, world {world}, {kind} launch: {failure}")
        return results


def _wait_all(procs: list[subprocess.Popen], logs: list, timeout: float) -> str | None:
    """Wait for every rank; the first failure (or a timeout) as text, else None."""
    deadline = time.monotonic() + timeout
    while True:
        codes = [proc.poll() for proc in procs]
        for rank, code in enumerate(codes):
            if code not in (None, 0):
                stderr = logs[rank][1]
                stderr.seek(0)
                return f"rank {rank} exited {code}: {stderr.read().strip()[-600:]}"
        if all(code == 0 for code in codes):
            return None
        if time.monotonic() > deadline:
            return f"timed out after {timeout} s"
        time.sleep(0.05)


# ------------------------------------------------------------------ the driver


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def measure(head: str, world: int, args: argparse.Namespace) -> dict[str, Any]:
    """One result row: timing (and memory unless ``--no-memory``) of ``head`` on ``world``."""
    timed = launch("time", head, world, args)
    per_step = [max(r["times_s"][i] for r in timed) for i in range(args.repeats)]
    row: dict[str, Any] = {
        "head": head,
        "head_name": "sphereface2",
        "world": world,
        "oversubscribed": world * args.threads_per_rank > _cores(),
        "shard_classes": [r["classes"][1] - r["classes"][0] for r in timed],
        "local_batch": [r["local_batch"] for r in timed],
        "param_bytes_per_rank": [r["param_bytes"] for r in timed],
        "step_times_s": per_step,
        "rank_times_s": [r["times_s"] for r in timed],
        "median_s": statistics.median(per_step),
        "min_s": min(per_step),
        "loss": timed[0]["loss"],
        "torch": timed[0]["torch"],
    }
    if not args.no_memory:
        mem = launch("memory", head, world, args)
        row["memory_per_rank"] = [
            {k: r[k] for k in ("rss_before", "rss_peak", "grad_bytes", "peak_extra")} for r in mem
        ]
        row["peak_extra_max"] = max(r["peak_extra"] for r in mem)
    return row


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's time and memory as a fraction of the same head's world-1 row."""
    base = {r["head"]: r for r in rows if r["world"] == 1}
    for row in rows:
        one = base.get(row["head"])
        if one is None:
            continue
        row["time_vs_world1"] = row["median_s"] / one["median_s"]
        row["shard_bytes_vs_world1"] = max(row["param_bytes_per_rank"]) / max(
            one["param_bytes_per_rank"]
        )
        if row.get("peak_extra_max") is not None and one.get("peak_extra_max"):
            row["peak_extra_vs_world1"] = row["peak_extra_max"] / one["peak_extra_max"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--heads", nargs="+", choices=IMPLEMENTATIONS, default=["plain", "fused"])
    parser.add_argument("--classes", type=int, default=93431)
    parser.add_argument("--batch", type=int, default=256, help="global batch, split over ranks")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads-per-rank", type=int, default=1)
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        choices=["PASSIVE", "ACTIVE", "unset"],
        help="OpenMP idle threads sleep (PASSIVE) or spin; spinning is ruinous on a busy machine",
    )
    parser.add_argument("--no-memory", action="store_true", help="time only")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per launch")
    parser.add_argument("--collective-timeout", type=float, default=600.0)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "sharded_head.json"
    )
    parser.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, low in MINIMUMS.items():
        if getattr(args, name) < low:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"{flag} must be >= {low}, got {getattr(args, name)}")
    for world in args.worlds:
        if not 1 <= world <= args.batch:
            raise SystemExit(f"--worlds: each must be in [1, --batch={args.batch}], got {world}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        (args.head,) = args.heads
        print(json.dumps(rank_main(args)))
        return

    load_start = os.getloadavg()
    rows = []
    for head in args.heads:
        for world in sorted(set(args.worlds)):
            print(f"{head} head, world {world} ...", file=sys.stderr, flush=True)
            rows.append(measure(head, world, args))
    _add_ratios(rows)
    report = {
        "benchmark": "sharded_head",
        "config": {
            "batch": args.batch,
            "dim": args.dim,
            "classes": args.classes,
            "repeats": args.repeats,
            "threads_per_rank": args.threads_per_rank,
            "cores": _cores(),
            "backend": "gloo",
            "init": "shard",
            "omp_wait_policy": args.omp_wait_policy,
            "dtype": "float32",
            "device": "cpu",
            "torch": rows[0]["torch"] if rows else None,
            "machine": platform.machine(),
            "processor": cpu_name(),
            "cpus": os.cpu_count(),
        },
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": rows,
    }
    write_report(report, args.out, table(report))


def table(report: dict[str, Any]) -> str:
    """The report as a text table, one row per (head, world)."""
    cfg, load = report["config"], report["load_average"]
    nan = float("nan")
    lines = [
        f"B = {cfg['batch']} (global), d = {cfg['dim']}, K = {cfg['classes']}, Gloo, "
        f"{cfg['threads_per_rank']} thread(s) per rank on {cfg['cores']} cores, "
        f"{cfg['repeats']} repeats, {cfg['processor']}; load average "
        f"{load['start'][0]:.1f} -> {load['end'][0]:.1f}",
        f"{'head':<6} {'world':>5} {'classes/rank':>12} {'shard MiB':>9} {'median s':>9} "
        f"{'min s':>7} {'x w1':>5} {'peak extra MiB':>14} {'x w1':>5}",
    ]
    for row in report["results"]:
        extra = row.get("peak_extra_max")
        flag = " *" if row["oversubscribed"] else ""
        lines.append(
            f"{row['head']:<6} {row['world']:>5} {max(row['shard_classes']):>12} "
            f"{max(row['param_bytes_per_rank']) / 2**20:>9.1f} {row['median_s']:>9.3f} "
            f"{row['min_s']:>7.3f} {row.get('time_vs_world1', nan):>5.2f} "
            f"{extra / 2**20 if extra is not None else nan:>14.1f} "
            f"{row.get('peak_extra_vs_world1', nan):>5.2f}{flag}"
        )
    lines.append(
        "per rank (largest): shard MiB = proxy rows + bias (the gradient adds as much again); "
        "peak extra = transient memory of one step beyond parameters and gradients"
    )
    if any(r["oversubscribed"] for r in report["results"]):
        lines.append(
            f"* world x threads-per-rank > {cfg['cores']} cores: the ranks share cores, so "
            "the time does not scale there; the memory per rank is the point of this run"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
