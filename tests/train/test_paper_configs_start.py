"""Every paper config starts training on data in a supported format and logs throughput.

The real networks (SFNet-20/64 without BN, IResNet-100) run one optimiser step each on
the tiny training set (its 16x16 images resized to the config's 112x112 by the training
transform), with a global batch of 2 and no validation sets (fp16 becomes bf16 on the
CPU). Checkpoint writing is replaced by a recorder: a 65M-parameter checkpoint per config
is not what is tested here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sphereface2.train.run as run_module
import sphereface2.train.trainer as trainer_module
from sphereface2.config import load_config

PAPER = sorted((Path(__file__).parents[2] / "configs" / "paper").glob("*.yaml"))

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_config_trains_one_step(path, tiny_data, tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(
        run_module, "save_checkpoint", lambda state, folder, it, keep: saved.append(it)
    )
    overrides = [
        f"data.train={tiny_data}",
        "data.val=[]",
        "data.batch_size=2",
        "data.num_workers=0",
        "runtime.device=cpu",
        "runtime.log_every=1",
    ]
    cfg = load_config(path, overrides)
    if cfg.runtime.amp == "fp16":  # the MS1M recipe's GPU setting; CPU autocast is bf16
        cfg = load_config(path, [*overrides, "runtime.amp=bf16"])
    result = trainer_module.train(cfg, tmp_path / "run", stop_after=1, echo=False)
    assert result.status == "stopped" and result.iteration == 1 and saved == [1]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "train" and rows[0]["images_per_s"] > 0
    assert rows[0]["loss"] == pytest.approx(result.final_loss)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "img/s" in log and cfg.model.backbone in log
