"""``sphereface2 demo``: build the glyph dataset, train configs/demo.yaml, evaluate."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train and evaluate on the built-in glyph dataset (CPU, a few minutes)",
        description="Build the built-in open-set glyph dataset (RecordIO training set and a "
        "6,000-pair .bin of unseen identities) if missing, train configs/demo.yaml on it, "
        "and print the verification table of the trained network next to the untrained "
        "one. Running it again resumes or reuses the finished run in --out.",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--data", default="data/demo", help="dataset folder (default: %(default)s)")
    parser.add_argument("--out", default="runs/demo", help="run folder (default: %(default)s)")
    parser.add_argument("--config", help="training config (default: configs/demo.yaml)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sphereface2.demo import run_demo

    run_demo(
        data_dir=args.data,
        out_dir=args.out,
        config=args.config,
        overrides=args.overrides,
        device=args.device,
        seed=args.seed,
    )
    return 0
