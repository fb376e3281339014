"""Gallery search: the exact chunked search against faiss indexes, at growing gallery sizes.

For each gallery size N (default 10^4, 10^5, 10^6) the gallery is N random unit vectors
(d = 512, float32). Queries are planted near-duplicates: Q gallery rows picked at random,
each mixed with an independent random direction so that its cosine to its source is
``--cosine`` (0.9), then renormalised. Random unit vectors in 512-d have cosines of about
+-0.044 to each other, so the source row is the exact nearest neighbour and recall is
meaningful (the table checks that: "exact finds source").

Methods, each asked for the top ``--k`` rows of every query of one batch of Q:

- ``exact``: :func:`sphereface2.inference.search.exact_top_k` (chunked matrix products,
  64 MiB bound on the score chunk);
- ``faiss-flat``: ``IndexFlatIP`` (exact too), up to ``--flat-max`` rows;
- ``faiss-ivf nprobe=P``: :func:`sphereface2.inference.faiss_index.build_index` with
  ``kind="ivf"`` (nlist = the power of two nearest sqrt(N), spherical k-means on at most
  64 x nlist rows), searched at each ``--nprobe``; from ``--ivf-min`` rows.

Reported per method: the time of one batch of Q queries (median of ``--repeats`` after a
warm-up run), the peak extra memory of the search (high-water RSS during the search minus
RSS before, after resetting the high-water mark through /proc/self/clear_refs), the index's
build time and the memory it holds (RSS growth over the build), and recall@1: the fraction
of queries whose first result is the exact search's first result.

    nice -n 10 python benchmarks/gallery_search.py                # ~3-5 min on 2 cores
    python benchmarks/gallery_search.py --sizes 2000 --queries 16 --out /tmp/g.json

Needs faiss-cpu for the faiss rows (``pip install 'sphereface2[faiss]'``); without it only
the exact search is measured. Prints a table and writes JSON (default
benchmarks/results/gallery_search.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench_common import cpu_name, write_report
from sphereface2.inference import faiss_index
from sphereface2.inference.search import DEFAULT_MEMORY_BYTES, exact_top_k

GENERATE_ROWS = 1 << 16  # rows drawn per step: bounds the float32 temporaries


def unit_gallery(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` random unit vectors, float32, drawn in blocks."""
    out = np.empty((rows, dim), np.float32)
    for start in range(0, rows, GENERATE_ROWS):
        block = rng.standard_normal((min(GENERATE_ROWS, rows - start), dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + block.shape[0]] = block
    return out


def planted_queries(
    gallery: np.ndarray, count: int, cosine: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, sources)``: each query has cosine ~``cosine`` to its source row."""
    sources = rng.choice(gallery.shape[0], count, replace=False)
    base = gallery[sources].astype(np.float64)
    noise = rng.standard_normal(base.shape)
    noise -= np.sum(noise * base, axis=1, keepdims=True) * base  # orthogonal to the source
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    queries = cosine * base + np.sqrt(1.0 - cosine**2) * noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries.astype(np.float32), sources


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def measure(run: Callable[[], Any], repeats: int) -> tuple[list[float], int | None, Any]:
    """``(times_s, peak_extra_bytes, last_result)``: one warm-up run (its peak is the one
    reported), then ``repeats`` timed runs."""
    resettable = _reset_peak()
    before = _status_kib("VmRSS")
    result = run()
    peak = (_status_kib("VmHWM") - before) * 1024 if resettable else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return times, peak, result


def _row(method: str, times: list[float], peak: int | None, top1: np.ndarray, exact_top1):
    return {
        "method": method,
        "times_s": [round(t, 5) for t in times],
        "median_s": statistics.median(times),
        "search_peak_extra_bytes": peak,
        "recall_at_1": float(np.mean(top1 == exact_top1)),
    }


def bench_size(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every method on one gallery of ``rows`` rows."""
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    gallery = unit_gallery(rows, args.dim, rng)
    queries, sources = planted_queries(gallery, args.queries, args.cosine, rng)
    print(f"N={rows}: data in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    out: dict[str, Any] = {"rows": rows, "gallery_bytes": gallery.nbytes, "methods": []}

    times, peak, found = measure(lambda: exact_top_k(gallery, queries, args.k), args.repeats)
    exact_top1 = found.rows[:, 0]
    out["exact_finds_source"] = float(np.mean(exact_top1 == sources))
    out["methods"].append(_row("exact", times, peak, exact_top1, exact_top1))
    print(f"N={rows}: exact {statistics.median(times):.3f} s", file=sys.stderr)
    if not faiss_index.faiss_available():
        return out

    kinds = []
    if rows <= args.flat_max:
        kinds.append("flat")
    if rows >= args.ivf_min:
        kinds.append("ivf")
    for kind in kinds:
        rss = _status_kib("VmRSS")
        start = time.perf_counter()
        index = faiss_index.build_index(gallery, kind=kind, seed=args.seed)
        build_s = time.perf_counter() - start
        index_bytes = (_status_kib("VmRSS") - rss) * 1024
        print(f"N={rows}: {kind} index built in {build_s:.1f} s", file=sys.stderr)
        for nprobe in args.nprobe if kind == "ivf" else [None]:
            faiss_index.set_nprobe(index, nprobe)
            times, peak, found = measure(
                lambda index=index: faiss_index.index_top_k(index, queries, args.k), args.repeats
            )
            name = f"faiss-{kind}" + (f" nprobe={nprobe}" if nprobe else "")
            row = _row(name, times, peak, found.rows[:, 0], exact_top1)
            row.update(build_s=round(build_s, 3), index_bytes=index_bytes)
            if kind == "ivf":
                row.update(nlist=int(index.nlist), nprobe=int(index.nprobe))
            out["methods"].append(row)
        del index
    return out


def table(report: dict[str, Any]) -> str:
    """The report as a text table, one row per size and method."""
    cfg = report["config"]
    load = report["load_average"]
    lines = [
        f"gallery search, d = {cfg['dim']}, {cfg['queries']} planted queries per batch "
        f"(cosine {cfg['cosine']} to a gallery row), top-{cfg['k']} rows; {cfg['processor']}, "
        f"{cfg['cpus']} CPUs; load average {load['start'][0]:.1f} -> {load['end'][0]:.1f}",
        f"{'N':>9} {'method':<22} {'batch ms':>9} {'ms/query':>9} {'search MiB':>10} "
        f"{'build s':>8} {'index MiB':>9} {'recall@1':>8}",
    ]
    for size in report["results"]:
        for m in size["methods"]:
            peak = m["search_peak_extra_bytes"]
            build = f"{m['build_s']:.1f}" if "build_s" in m else "-"
            held = f"{m['index_bytes'] / 2**20:.0f}" if "index_bytes" in m else "-"
            lines.append(
                f"{size['rows']:>9} {m['method']:<22} {1e3 * m['median_s']:>9.1f} "
                f"{1e3 * m['median_s'] / cfg['queries']:>9.3f} "
                f"{peak / 2**20 if peak is not None else float('nan'):>10.1f} "
                f"{build:>8} {held:>9} {m['recall_at_1']:>8.3f}"
            )
        lines.append(
            f"{'':>9} exact finds source: {size['exact_finds_source']:.3f}; gallery "
            f"{size['gallery_bytes'] / 2**20:.0f} MiB"
        )
    lines.append(
        "batch ms: median time of one batch; search MiB: peak RSS growth during a search; "
        "index MiB: RSS growth over the build; recall@1: first result = exact first result"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=256, help="queries per batch")
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument("--cosine", type=float, default=0.9, help="query-to-source cosine")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--flat-max", type=int, default=100_000, help="largest flat index")
    parser.add_argument("--ivf-min", type=int, default=faiss_index.IVF_FROM_ROWS)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "gallery_search.json",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load_start = os.getloadavg()
    results = [bench_size(rows, args) for rows in args.sizes]
    faiss_version = None
    if faiss_index.faiss_available():
        import faiss

        faiss_version = faiss.__version__
    report = {
        "benchmark": "gallery_search",
        "config": {
            "sizes": args.sizes,
            "dim": args.dim,
            "queries": args.queries,
            "k": args.k,
            "cosine": args.cosine,
            "nprobe": args.nprobe,
            "flat_max": args.flat_max,
            "ivf_min": args.ivf_min,
            "repeats": args.repeats,
            "seed": args.seed,
            "exact_memory_bound_bytes": DEFAULT_MEMORY_BYTES,
            "numpy": np.__version__,
            "faiss": faiss_version,
            "machine": platform.machine(),
            "processor": cpu_name(),
            "cpus": os.cpu_count(),
        },
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "results": results,
    }
    write_report(report, args.out, table(report))


if __name__ == "__main__":
    main()
