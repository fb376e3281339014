"""The built-in demo: build the glyph dataset, train on it, evaluate on unseen identities.

One call of :func:`run_demo` does what ``sphereface2 demo`` does: it builds (once) the
open-set glyph dataset of :mod:`sphereface2.data.demo_glyphs`, trains ``configs/demo.yaml``
on it through the real RecordIO reader, and scores the 6,000 test pairs (identities never
seen in training) with both verification protocols, next to the same network untrained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sphereface2.config import load_config
from sphereface2.data.demo_glyphs import DemoDatasetInfo, ensure_demo_dataset
from sphereface2.evaluate.report import build_report, format_text_table, write_report
from sphereface2.evaluate.runner import VerificationRun, evaluate_verification_sets
from sphereface2.evaluate.verification_sets import open_pair_set
from sphereface2.models.loading import TorchEmbeddingModel, load_embedding_model
from sphereface2.models.model_config import build_backbone_from_config
from sphereface2.train.trainer import TrainResult, train

DEMO_SET_NAME = "Glyphs"


@dataclass
class DemoResult:
    """What the demo built, trained and measured."""

    dataset: DemoDatasetInfo
    training: TrainResult
    untrained: VerificationRun
    trained: VerificationRun
    report_files: dict[str, Path]
    seconds: float


def default_demo_config() -> Path:
    """``configs/demo.yaml`` of the source tree this package was installed from."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = base / "configs" / "demo.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "configs/demo.yaml not found in the current folder or the source tree; pass --config PATH"
    )


def run_demo(
    data_dir: str | Path = "data/demo",
    out_dir: str | Path = "runs/demo",
    config: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    device: str = "cpu",
    seed: int = 0,
    echo: bool = True,
    dataset_params: dict | None = None,
) -> DemoResult:
    """Build the demo data if needed, train (resuming a finished or stopped demo run), evaluate.

    ``overrides`` are ``key=value`` config overrides applied after the data paths;
    ``dataset_params`` go to :func:`~sphereface2.data.demo_glyphs.ensure_demo_dataset`
    (e.g. a smaller set for tests).
    """
    start = time.perf_counter()
    say = print if echo else (lambda *a, **k: None)
    config_path = Path(config) if config is not None else default_demo_config()
    if not config_path.is_file():  # fail before spending time on the data
        raise FileNotFoundError(f"{config_path}: demo config file not found")
    info = ensure_demo_dataset(data_dir, seed, **(dataset_params or {}))
    verb = f"built in {info.seconds:.1f} s" if info.built else "already built"
    say(
        f"demo data {info.root} ({verb}): {info.num_classes} training identities, "
        f"{info.num_train_images} images; {info.num_test_identities} unseen test identities, "
        f"{info.num_pairs} pairs"
    )
    cfg = load_config(
        config_path,
        [f"data.train={info.root}", f"data.val.0.path={info.test_bin}", *overrides],
    )

    torch.manual_seed(cfg.seed)  # the same initial weights the run starts from
    untrained_model = TorchEmbeddingModel(
        build_backbone_from_config(cfg.model),
        cfg.model,
        device,
        name="untrained",
        description="untrained",
    )
    result = train(cfg, out_dir, resume="auto", device=device, echo=echo)
    model = load_embedding_model(result.run_dir, device)

    sets = [open_pair_set(info.test_bin, DEMO_SET_NAME, model.input_size)]
    batch = cfg.data.val_batch_size
    untrained = evaluate_verification_sets(untrained_model, sets, batch_size=batch)
    trained = evaluate_verification_sets(model, sets, batch_size=batch)
    settings = {
        "config": str(config_path),
        "iterations": result.iteration,
        "training images/s": round(result.images_per_second, 1),
        "untrained 10-fold accuracy": round(100 * untrained.sets[0].result.kfold.accuracy, 2),
        "command": "sphereface2 demo",
    }
    report = build_report(model.name, model.description, trained, settings=settings)
    files = write_report(report, Path(result.run_dir) / "eval")
    seconds = time.perf_counter() - start

    say("")
    say(format_text_table(report))
    say("")
    say(_summary(untrained, trained, seconds))
    say(f"report: {', '.join(str(p) for p in files.values())}")
    return DemoResult(info, result, untrained, trained, files, seconds)


def _summary(untrained: VerificationRun, trained: VerificationRun, seconds: float) -> str:
    rows = [("untrained network", untrained), ("trained network", trained)]
    pairs = len(trained.sets[0].issame)
    header = f"{'10-fold acc (InsightFace)':>26} {'best-threshold acc (OpenSphere)':>32}"
    lines = [
        f"Verification of unseen glyph identities ({DEMO_SET_NAME}, {pairs} pairs):",
        f"  {'model':<20} {header}",
    ]
    for label, run in rows:
        result = run.sets[0].result
        kfold = f"{100 * result.kfold.accuracy:.2f} +- {100 * result.kfold.std:.2f}"
        lines.append(f"  {label:<20} {kfold:>26} {100 * result.best_threshold.accuracy:>31.2f}%")
    lines.append(f"demo finished in {seconds / 60:.1f} min")
    return "\n".join(lines)
