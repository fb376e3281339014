"""A run on a training set that names its identities writes ``classes.json``:
``class_names[label]`` is the name behind the head's proxy row ``label``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sphereface2.data.decode import encode_jpeg
from sphereface2.train.classes_record import read_class_names
from sphereface2.train.run_folder import RunFolder
from sphereface2.train.trainer import train

SIZE = 16  # the tiny training set's image size (conftest.py)
# file order differs from sorted order, so a label -> name mix-up shows
NAMES = ("zoe", "adam", "mia", "bob")


def _path_name_list(root: Path) -> Path:
    """A 'path name' list: 4 identities x 3 images, lines grouped by identity."""
    rng = np.random.default_rng(0)
    lines = []
    for name in NAMES:
        (root / name).mkdir(parents=True)
        for i in range(3):
            image = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            (root / name / f"{i}.jpg").write_bytes(encode_jpeg(image))
            lines.append(f"{name}/{i}.jpg {name}")
    listing = root / "train.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_a_path_name_list_writes_classes_json(tmp_path, tiny_config, noise):
    listing = _path_name_list(tmp_path / "faces")
    data = {"train": str(listing), "label_noise": {"p": noise, "seed": 1}}
    run = tmp_path / "run"
    train(tiny_config(data=data), run, stop_after=1, echo=False)
    expected = sorted(NAMES)  # the list reader numbers names in sorted order
    assert json.loads((run / "classes.json").read_text()) == {"class_names": expected}
    assert read_class_names(run / "classes.json") == expected
    summary = json.loads((run / "summary.json").read_text())
    assert summary["files"]["classes"] == str(RunFolder(run).classes) == str(run / "classes.json")
    assert summary["num_classes"] == len(NAMES)
    assert ("label_noise" in summary["files"]) == (noise > 0)  # NoisyLabelDataset passes names


def test_integer_labels_write_no_classes_json(tmp_path, tiny_config):
    run = tmp_path / "run"
    train(tiny_config(), run, stop_after=1, echo=False)  # the tiny RecordIO set
    assert not (run / "classes.json").exists()
    assert "classes" not in json.loads((run / "summary.json").read_text())["files"]


def test_read_class_names_names_the_file(tmp_path):
    bad = tmp_path / "classes.json"
    bad.write_text('{"class_names": [1, 2]}')
    with pytest.raises(ValueError, match=r"classes\.json: expected"):
        read_class_names(bad)
