"""The layout of a training run's output folder.

<run>/config.yaml      the effective config (file + overrides), rewritten on resume
<run>/log.txt          the text log (progress lines, messages, errors), appended
<run>/metrics.jsonl    one JSON row per logged step and validation
<run>/curves.png       loss, positive/negative cosine, learning rate and validation
                       accuracy against the iteration (redrawn when a run ends or stops)
<run>/checkpoints/     ckpt_<iteration>.pt full training states (the newest N kept)
<run>/model.pt         evaluation weights at the end (the last checkpoints averaged)
<run>/summary.json     what happened: status, iterations, losses, speed, validation, label
                       noise, skipped samples, the error of a failed run, files
<run>/label_noise.json the synthetic label noise, when data.label_noise.p > 0
                       (NoisyLabelDataset.save_corrupted's record)
<run>/classes.json     {"class_names": [...]}: the identity of each class index, when
                       the training set names them (folders, 'path name' lists)
<run>/tensorboard/     TensorBoard events, when enabled
<run>/.lock            held by the one process training into the folder (its pid inside)

Nothing is written before a run has passed its start-up checks (see
:mod:`sphereface2.train.trainer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sphereface2.models.checkpoint import list_checkpoints

#: The lock file that marks a run folder in use (see :mod:`sphereface2.train.run_lock`).
LOCK_NAME = ".lock"


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

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def label_noise(self) -> Path:
        return self.root / "label_noise.json"

    @property
    def classes(self) -> Path:
        return self.root / "classes.json"

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    def files(self) -> dict[str, Path]:
        """Every entry of the layout by name (whether or not it exists yet)."""
        names = ("config", "log", "metrics", "curves", "checkpoints", "model", "summary")
        extras = ("label_noise", "classes", "tensorboard")
        return {name: getattr(self, name) for name in (*names, *extras)}

    def has_checkpoints(self) -> bool:
        return bool(list_checkpoints(self.checkpoints))

    def create(self) -> None:
        """Create the folder and its checkpoints/ sub-folder."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)


def open_run_folder(out_dir: str | Path, resuming: bool, create: bool = True) -> RunFolder:
    """The run folder at ``out_dir``, created if needed and ``create`` (the trainer passes
    False and creates it once every start-up check has passed).

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
