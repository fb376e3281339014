"""Nothing is written before a run is known to be valid: a refused resume leaves the run
folder byte for byte as it was, and a run that fails its start-up checks leaves no
half-made run folder behind."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from sphereface2.config import ConfigError
from sphereface2.data.packing import write_recordio
from sphereface2.data.safe_pickle import UnsafePickleError
from sphereface2.registry import UnknownNameError
from sphereface2.train.trainer import ResumeError, train

SIZE = 16  # the tiny training set's image size (conftest.py)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the lock (which holds the last holder's pid)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def _other_dataset(root: Path) -> Path:
    """4 classes of 5 images: the tiny set's classes with fewer images."""
    root.parent.mkdir(parents=True)
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(20)]
    write_recordio(root, [(image, i % 4) for i, image in enumerate(images)])
    return root


@pytest.mark.parametrize("change", ["data set", "config", "fresh run"])
def test_refused_start_leaves_the_run_folder_as_it_was(tmp_path, tiny_data, tiny_config, change):
    run = tmp_path / "run"
    val = [{"name": "toy", "path": str(tiny_data / "val.bin")}]
    data = {"val": val, "val_every": 2, "label_noise": {"p": 0.5, "seed": 1}}
    train(tiny_config(data=data), run, stop_after=3, echo=False)
    before = _files(run)
    written = {"config.yaml", "log.txt", "metrics.jsonl", "summary.json", "label_noise.json"}
    assert written <= before.keys()
    assert "checkpoints/ckpt_00000003.pt" in before
    if change == "data set":  # data.train may change on resume, its size may not
        other = _other_dataset(tmp_path / "other" / "train")
        cfg = tiny_config(data={**data, "train": str(other.parent)})
        with pytest.raises(ResumeError, match="trained on 24 images .* has 20 images"):
            train(cfg, run, resume="auto", echo=False)
    elif change == "config":
        with pytest.raises(ResumeError, match=r"optim\.lr: 0\.05 -> 0\.2"):
            train(tiny_config(data=data, optim={"lr": 0.2}), run, resume="auto", echo=False)
    else:
        with pytest.raises(ValueError, match="already has checkpoints"):
            train(tiny_config(data=data), run, echo=False)
    assert _files(run) == before


class _RunsCommand:
    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _bad_start(tmp_path: Path, tiny_config, what: str):
    """(config, expected error, message pattern) of a run that fails its start-up checks."""
    if what == "missing data":
        return tiny_config(data={"train": str(tmp_path / "nope")}), FileNotFoundError, "nope"
    if what == "missing val":
        val = [{"name": "lfw", "path": str(tmp_path / "lfw.bin")}]
        return tiny_config(data={"val": val}), FileNotFoundError, "lfw.bin"
    if what == "malicious val":
        evil = tmp_path / "evil.bin"
        evil.write_bytes(pickle.dumps(([_RunsCommand(str(tmp_path / "pwned"))], [True])))
        cfg = tiny_config(data={"val": [{"name": "evil", "path": str(evil)}]})
        return cfg, UnsafePickleError, r"evil\.bin: refusing to load global"
    if what == "fp16 on the cpu":
        return tiny_config(runtime={"amp": "fp16"}), ConfigError, "fp16 needs a CUDA device"
    cfg = tiny_config()
    cfg.model.backbone = "resnet9000"  # an unknown name, set in code past load-time checks
    return cfg, UnknownNameError, "resnet9000"


@pytest.mark.parametrize(
    "what", ["missing data", "missing val", "malicious val", "fp16 on the cpu", "bad backbone"]
)
def test_failed_start_leaves_no_run_folder(tmp_path, tiny_config, what):
    cfg, error, pattern = _bad_start(tmp_path, tiny_config, what)
    run = tmp_path / "runs" / "new"
    with pytest.raises(error, match=pattern):
        train(cfg, run, echo=False)
    assert not (tmp_path / "runs").exists()  # the folder and the parent made for it
    assert not (tmp_path / "pwned").exists()


def test_failed_start_in_an_existing_empty_folder_leaves_it_empty(tmp_path, tiny_config):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError):
        train(tiny_config(data={"train": str(tmp_path / "nope")}), run, echo=False)
    assert list(run.iterdir()) == []
