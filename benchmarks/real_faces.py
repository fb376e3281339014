"""The paper's loss comparison and label-noise study on real faces (cfp_dev), at a CPU budget.

    python benchmarks/real_faces.py                 # the table: every head x noise x seed
    python benchmarks/real_faces.py --split val --variants start warmup ...   # ablations

Each cell (head, recipe, noise p, seed) trains one of ``configs/small/<head>.yaml`` with
``sphereface2 train`` on cfp_dev's training identities (packed with ``sphereface2 data
pack``; labels of the training set relabelled uniformly at random with probability p,
the paper's protocol) and scores the FF and FP test pairs with both of the project's
protocols. ``--split val`` trains on 300 of the 350 training identities instead and scores
pairs of the 50 held out: the only split recipes are chosen on (cfp_dev's rules). Each
finished cell leaves ``result.json`` in its run folder; a re-run skips it, so an
interrupted benchmark continues where it stopped. Noisy cells are also audited
(``sphereface2 data audit``): how well each head's own-class score finds the relabelled
samples.

Writes benchmarks/results/real_faces.json (``rows``: one per cell and pair set) and a PNG
chart; prints the table. Skips cleanly (exit 0) where cfp_dev is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench_common import cpu_name, write_report
from cfp_dev import REPO, PreparedData, find_cfp, prepare

HEADS = ("softmax", "normface", "cosface", "arcface", "sphereface", "sphereface2")
EXTRA_HEADS = ("sphereface2_A", "sphereface2_M")
DATA_NOTE = {
    "test": "cfp_dev: trained on the 350 training identities, scored on the FF/FP test pairs",
    "val": "cfp_dev: trained on 300 training identities, scored on pairs of the 50 held out",
}

#: The recipe the ablations started from: configs/small/ without its two winning changes.
START = ["model.embedding_dim=256", "schedule.warmup_iters=0"]

#: Named recipes for ``--split val`` ablations, as ``key=value`` config overrides on top of
#: configs/small/ (later overrides win). ``small`` is the shipped recipe itself; every other
#: variant changes one thing of ``start``. Head-parameter variants (lw, r, lam, m, t) apply
#: to SphereFace2 only.
VARIANTS: dict[str, list[str]] = {
    "small": [],
    "start": START,
    "lr0.05": [*START, "optim.lr=0.05"],
    "lr0.2": [*START, "optim.lr=0.2"],
    "warmup": [*START, "schedule.warmup_iters=100"],
    "nodecay": [*START, "optim.no_decay_bias_bn=true"],
    "emb128": [*START, "model.embedding_dim=128"],
    "emb512": [*START, "model.embedding_dim=512"],
    "bs64": [
        *START,
        "data.batch_size=64",
        "schedule.iterations=1000",
        "schedule.milestones=[600,800]",
        "schedule.warmup_iters=0",
        "runtime.checkpoint_every=100",
    ],
    "bs256": [
        *START,
        "data.batch_size=256",
        "schedule.iterations=250",
        "schedule.milestones=[150,200]",
        "runtime.checkpoint_every=25",
    ],
    "lw5": [*START, "head.params.lw=5.0"],
    "lw20": [*START, "head.params.lw=20.0"],
    "r30": [*START, "head.params.r=30.0"],
    "r64": [*START, "head.params.r=64.0"],
    "lam0.5": [*START, "head.params.lam=0.5"],
    "m0.3": [*START, "head.params.m=0.3"],
    "t2": [*START, "head.params.t=2.0"],
}


@dataclass(frozen=True)
class Cell:
    head: str
    recipe: str
    noise: float
    seed: int
    split: str  # "test": train on all 350 ids, score the test pairs; "val": the hold-out

    @property
    def key(self) -> str:
        return f"{self.split}/{self.recipe}/{self.head}_p{self.noise:g}_s{self.seed}"


def config_path(head: str, recipes: Path) -> Path:
    return recipes / f"{head}.yaml"


def train_command(
    cell: Cell, data: PreparedData, run: Path, recipes: Path, extra: list[str]
) -> list[str]:
    train = data.full if cell.split == "test" else data.split
    overrides = [
        f"data.train={train}",
        f"seed={cell.seed}",
        f"data.label_noise.p={cell.noise}",
        f"data.label_noise.seed={cell.seed}",
        "data.num_workers=0",
        "runtime.device=cpu",
        *extra,
        *VARIANTS.get(cell.recipe, []),
    ]
    # Pairs are scored once at the end (real_faces_eval), not by the trainer's validation.
    overrides.append("data.val=[]")
    cfg = config_path(cell.head, recipes)
    return [
        sys.executable,
        "-m",
        "sphereface2",
        "train",
        str(cfg),
        "--out",
        str(run),
        "--resume",
        "auto",
        *overrides,
    ]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def fingerprint(cell: Cell, data: PreparedData, recipes: Path, extra: list[str]) -> str:
    """Short hash of what the cell trains: the recipe file's text and every override (so a
    changed recipe gets a new run folder instead of reusing an old result)."""
    text = config_path(cell.head, recipes).read_text(encoding="utf-8")
    parts = [text, *train_command(cell, data, Path("-"), recipes, extra)[9:]]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def run_cell(
    cell: Cell, data: PreparedData, scratch: Path, recipes: Path, extra: list[str], threads: int
) -> dict[str, Any]:
    """Train, evaluate and (with noise) audit one cell; reuse its result.json if present."""
    run = scratch / "runs" / f"{cell.key}_{fingerprint(cell, data, recipes, extra)}"
    done = run / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    run.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cmd = train_command(cell, data, run, recipes, extra)
    with open(run.parent / f"{run.name}.stdout.txt", "w") as out:
        code = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(threads)
        ).returncode
    if code:
        log = run.parent / f"{run.name}.stdout.txt"
        raise RuntimeError(f"{cell.key}: training failed (exit {code}); see {log}")
    train_min = (time.perf_counter() - started) / 60
    helper = [
        sys.executable,
        str(Path(__file__)),
        "--evaluate-cell",
        str(run),
        "--split",
        cell.split,
        "--scratch",
        str(scratch),
        "--cfp",
        str(data.root),
    ]
    if cell.noise > 0:
        helper.append("--audit")
    ev = subprocess.run(helper, capture_output=True, text=True, env=_env(threads))
    if ev.returncode:
        raise RuntimeError(f"{cell.key}: evaluation failed:\n{ev.stdout}{ev.stderr}")
    measured = json.loads((run / "evaluation.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    result = {
        **cell.__dict__,
        "sets": measured["sets"],
        "audit": measured.get("audit"),
        "train_minutes": round(train_min, 3),
        "minutes": round((time.perf_counter() - started) / 60, 3),
        "images_per_s": summary.get("images_per_s"),
        "iterations": summary.get("iteration"),
        "final_loss": summary.get("final_loss"),
    }
    done.write_text(json.dumps(result, indent=1) + "\n")
    return result


def evaluate_cell(run: Path, data: PreparedData, split: str, audit: bool) -> None:
    """The evaluation half of a cell, in its own process (one thread, like training)."""
    from real_faces_eval import evaluate_run

    if split == "test":
        lists = {"FF": data.test_ff, "FP": data.test_fp}
        images = data.test_images
    else:
        lists = {"val_FF": data.val_ff, "val_FP": data.val_fp}
        images = data.val_images
    out: dict[str, Any] = {"sets": evaluate_run(run, images, data.root, lists)}
    if audit:
        from sphereface2.evaluate.label_audit import audit_labels

        result = audit_labels(run, out=run / "audit", top=64)
        out["audit"] = result.metrics.to_dict()
    (run / "evaluation.json").write_text(json.dumps(out, indent=1) + "\n")


def rows_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        for name, m in r["sets"].items():
            rows.append(
                {
                    "head": r["head"],
                    "recipe": r["recipe"],
                    "noise": r["noise"],
                    "seed": r["seed"],
                    "set": name,
                    "acc_10fold": m["acc_10fold"],
                    "acc_10fold_std": m["acc_10fold_std"],
                    "acc_best_threshold": m["acc_best_threshold"],
                    "minutes": r["minutes"],
                }
            )
    return rows


def aggregate(rows: list[dict[str, Any]]) -> dict[tuple[str, str, float, str], dict[str, float]]:
    """Mean and spread (sample std over seeds) per (head, recipe, noise, set)."""
    groups: dict[tuple[str, str, float, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["head"], row["recipe"], row["noise"], row["set"]), []).append(row)
    out = {}
    for key, members in groups.items():
        kf = np.array([m["acc_10fold"] for m in members]) * 100
        bt = np.array([m["acc_best_threshold"] for m in members]) * 100
        out[key] = {
            "seeds": len(members),
            "acc_10fold_mean": float(kf.mean()),
            "acc_10fold_spread": float(kf.std(ddof=1)) if len(kf) > 1 else 0.0,
            "acc_best_threshold_mean": float(bt.mean()),
            "acc_best_threshold_spread": float(bt.std(ddof=1)) if len(bt) > 1 else 0.0,
        }
    return out


def _mean_spread(v: dict[str, float]) -> str:
    kfold = f"{v['acc_10fold_mean']:.2f} +- {v['acc_10fold_spread']:.2f}"
    return f"{kfold} ({v['acc_best_threshold_mean']:.2f})"


def table(
    summary: dict[tuple[str, str, float, str], dict[str, float]], results: list[dict[str, Any]]
) -> str:
    """The paper's layout: one row per head; columns noise p x pair set (10-fold mean +-
    spread over seeds, best-threshold mean in brackets); the drop from p = 0 to the
    largest p; the audit's precision at the number of changed labels."""
    heads = sorted(
        {k[0] for k in summary},
        key=lambda h: (HEADS + EXTRA_HEADS).index(h) if h in HEADS + EXTRA_HEADS else 99,
    )
    recipes = sorted({k[1] for k in summary})
    noises = sorted({k[2] for k in summary})
    sets = sorted({k[3] for k in summary})
    cols = [(p, s) for p in noises for s in sets]
    header = ["head", "recipe"] + [f"{s} p={p:g}" for p, s in cols]
    if len(noises) > 1:
        header += [f"{s} drop p={noises[-1]:g}" for s in sets]
    header += [f"audit P@n p={p:g}" for p in noises if p > 0]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for recipe in recipes:
        for head in heads:
            cells = [head, recipe]
            for p, s in cols:
                v = summary.get((head, recipe, p, s))
                cells.append(_mean_spread(v) if v else "-")
            if len(noises) > 1:
                for s in sets:
                    a, b = (
                        summary.get((head, recipe, noises[0], s)),
                        summary.get((head, recipe, noises[-1], s)),
                    )
                    cells.append(
                        f"{a['acc_10fold_mean'] - b['acc_10fold_mean']:.2f}" if a and b else "-"
                    )
            for p in noises:
                if p == 0:
                    continue
                precision = [
                    r["audit"]["precision_at_n"] * 100
                    for r in results
                    if r["head"] == head
                    and r["recipe"] == recipe
                    and r["noise"] == p
                    and r.get("audit")
                ]
                cells.append(f"{np.mean(precision):.1f}" if precision else "-")
            lines.append(" | ".join(cells))
    return "\n".join(lines)


def chart(summary: dict[tuple[str, str, float, str], dict[str, float]], out: Path) -> None:
    """Grouped bars: 10-fold accuracy per head, one group per (set, p), error bars = spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = [h for h in HEADS + EXTRA_HEADS if any(k[0] == h for k in summary)]
    groups = sorted({(k[3], k[2]) for k in summary})
    recipe = sorted({k[1] for k in summary})[0]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(groups)), 4.5))
    width = 0.8 / max(len(heads), 1)
    for i, head in enumerate(heads):
        xs, ys, es = [], [], []
        for j, (s, p) in enumerate(groups):
            v = summary.get((head, recipe, p, s))
            if v:
                xs.append(j + (i - (len(heads) - 1) / 2) * width)
                ys.append(v["acc_10fold_mean"])
                es.append(v["acc_10fold_spread"])
        ax.bar(xs, ys, width, yerr=es, label=head, capsize=2)
    ax.set_xticks(range(len(groups)), [f"{s}\np={p:g}" for s, p in groups])
    lows = [v["acc_10fold_mean"] for v in summary.values()]
    ax.set_ylim(max(0, min(lows) - 10), min(100, max(lows) + 5))
    ax.set_ylabel("10-fold verification accuracy (%)")
    ax.set_title(f"cfp_dev test pairs, recipe configs/{recipe}; mean +- spread over seeds")
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cfp", default=None, help="cfp_dev folder (default ../shared/data/cfp_dev)"
    )
    parser.add_argument(
        "--scratch", default=str(REPO / "runs" / "real_faces"), help="packed data and run folders"
    )
    parser.add_argument(
        "--recipes", default=str(REPO / "configs" / "small"), help="folder of <head>.yaml recipes"
    )
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.2, 0.6])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument(
        "--variants", nargs="+", default=["small"], help=f"recipe variants ({', '.join(VARIANTS)})"
    )
    parser.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for every cell",
    )
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per cell")
    parser.add_argument(
        "--out", default=None, help="JSON report (default benchmarks/results/real_faces[_val].json)"
    )
    parser.add_argument("--evaluate-cell", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--audit", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    root = find_cfp(args.cfp)
    if root is None:
        print(f"cfp_dev not found at {args.cfp or 'the default ../shared/data/cfp_dev'}: skipping")
        return 0
    scratch = Path(args.scratch)
    data = prepare(root, scratch / "data")
    if args.evaluate_cell:
        evaluate_cell(Path(args.evaluate_cell), data, args.split, args.audit)
        return 0
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    recipes = Path(args.recipes)
    cells = [
        Cell(head, variant, noise, seed, args.split)
        for variant in args.variants
        for noise in args.noise
        for seed in args.seeds
        for head in args.heads
    ]
    started = time.perf_counter()

    def one(cell: Cell) -> dict[str, Any]:
        result = run_cell(cell, data, scratch, recipes, args.extra, args.threads)
        sets = ", ".join(f"{k} {100 * v['acc_10fold']:.2f}" for k, v in result["sets"].items())
        clock = (time.perf_counter() - started) / 60
        print(f"[{clock:6.1f} min] {cell.key}: {sets} ({result['minutes']:.1f} min)", flush=True)
        return result

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(one, cells))
    rows = rows_of(results)
    summary = aggregate(rows)
    suffix = "" if args.split == "test" else "_val"
    out = (
        Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"real_faces{suffix}.json"
    )
    report = {
        "benchmark": "real_faces",
        "command": "python benchmarks/real_faces.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "threads_per_cell": args.threads,
            "parallel_cells": args.jobs,
        },
        "data": DATA_NOTE[args.split],
        "recipes": str(recipes.relative_to(REPO) if recipes.is_relative_to(REPO) else recipes),
        "overrides": args.extra,
        "rows": rows,
        "summary": [
            {"head": k[0], "recipe": k[1], "noise": k[2], "set": k[3], **v}
            for k, v in sorted(summary.items())
        ],
        "audit": [
            {
                "head": r["head"],
                "recipe": r["recipe"],
                "noise": r["noise"],
                "seed": r["seed"],
                **r["audit"],
            }
            for r in results
            if r.get("audit")
        ],
        "cells": [
            {
                k: r[k]
                for k in (
                    "head",
                    "recipe",
                    "noise",
                    "seed",
                    "split",
                    "minutes",
                    "train_minutes",
                    "images_per_s",
                    "iterations",
                    "final_loss",
                )
            }
            for r in results
        ],
    }
    text = table(summary, results)
    write_report(report, out, text)
    png = out.with_suffix(".png")
    chart(summary, png)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
