"""The layout of a training run's output folder.

<run>/config.yaml      the effective config (file + overrides), rewritten on resume
<run>/log.txt          the text log (progress lines, messages), appended
<run>/metrics.jsonl    one JSON row per logged step and validation
<run>/checkpoints/     ckpt_<iteration>.pt full training states (the newest N kept)
<run>/model.pt         evaluation weights at the end (the last checkpoints averaged)
<run>/summary.json     what happened: iterations, losses, speed, validation, files
<run>/tensorboard/     TensorBoard events, when enabled
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sphereface2.train.checkpoint import list_checkpoints


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def has_checkpoints(self) -> bool:
        return bool(list_checkpoints(self.checkpoints))

    def create(self) -> None:
        """Create the folder and its checkpoints/ sub-folder."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)


def open_run_folder(out_dir: str | Path, resuming: bool, create: bool = True) -> RunFolder:
    """The run folder at ``out_dir``, created if needed (and if ``create``: in a
    multi-process run only rank 0 creates it, after every rank has run the check).

    A fresh run refuses a folder that already holds checkpoints (it would mix two runs);
    the message says how to resume it or where else to write.
    """
    run = RunFolder(Path(out_dir))
    if not resuming and run.has_checkpoints():
        raise ValueError(
            f"{run.root}: this run folder already has checkpoints; resume it with "
            "--resume auto (resume='auto') or choose another output folder"
        )
    if create:
        run.create()
    return run
