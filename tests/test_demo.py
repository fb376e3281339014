"""The demo path end to end on a tiny glyph build: data -> RecordIO -> train -> .bin eval."""

from __future__ import annotations

import json

import pytest

from sphereface2.cli import main
from sphereface2.demo import default_demo_config, run_demo

TINY_DATA = {
    "train_identities": 12,
    "test_identities": 20,
    "samples_per_identity": 4,
    "test_samples_per_identity": 3,
    "num_pairs": 60,
}
TINY_RUN = [
    "schedule.iterations=4",
    "schedule.milestones=[3]",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.val_every=4",
    "data.val_batch_size=32",
    "runtime.checkpoint_every=2",
    "runtime.log_every=2",
    "model.options.width=0.125",
]


@pytest.mark.slow
def test_demo_builds_trains_and_reports(tmp_path, capsys):
    result = run_demo(
        data_dir=tmp_path / "data",
        out_dir=tmp_path / "run",
        config=default_demo_config(),
        overrides=TINY_RUN,
        dataset_params=TINY_DATA,
    )
    assert result.dataset.built and result.dataset.num_classes == 12
    assert result.training.iteration == 4
    for run in (result.untrained, result.trained):
        kfold = run.sets[0].result.kfold
        assert 0.0 <= kfold.accuracy <= 1.0 and len(run.sets[0].issame) == 60
    report = json.loads(result.report_files["json"].read_text())
    assert report["settings"]["iterations"] == 4
    out = capsys.readouterr().out
    assert "untrained network" in out and "trained network" in out
    assert "10-fold" in out and "best-threshold" in out

    # A second run reuses the data and the finished run instead of starting over.
    again = run_demo(
        data_dir=tmp_path / "data",
        out_dir=tmp_path / "run",
        config=default_demo_config(),
        overrides=TINY_RUN,
        dataset_params=TINY_DATA,
        echo=False,
    )
    assert not again.dataset.built and again.training.iteration == 4


def test_demo_command_is_listed_with_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "glyph" in capsys.readouterr().out


def test_missing_config_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        run_demo(
            data_dir=tmp_path / "data",
            out_dir=tmp_path / "run",
            config=tmp_path / "nope.yaml",
            dataset_params=TINY_DATA,
            echo=False,
        )
