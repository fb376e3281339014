"""A checkpoint that a weights-only load refuses: the message names the file and what was
refused, and never repeats torch's advice to load it with ``weights_only=False``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sphereface2 import cli
from sphereface2.train.load_errors import describe_load_error
from sphereface2.train.sharded_checkpoint import _load_shard

UNSAFE_ADVICE = ("weights_only", "add_safe_globals", "safe_globals", "trust")


def leave_a_mark(path: str) -> str:
    """What the payload would run on unpickling: the test checks that it never did."""
    Path(path).write_text("code from the checkpoint ran")
    return path


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return leave_a_mark, (self.marker,)


def _refused_file(path: Path, marker: Path) -> Path:
    torch.save({"format": "sphereface2-model", "version": 1, "x": Payload(marker)}, path)
    return path


def test_evaluate_names_the_file_and_gives_no_unsafe_advice(tmp_path, capsys):
    marker = tmp_path / "marker"
    model = _refused_file(tmp_path / "shared_by_someone.pt", marker)
    (tmp_path / "lfw.bin").write_bytes(b"")
    assert cli.main(["evaluate", str(model), str(tmp_path / "lfw.bin"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{model}: not a readable sphereface2 checkpoint (it holds objects that a " in err
    assert "weights-only load refuses (GLOBAL " in err and "leave_a_mark" in err
    for advice in UNSAFE_ADVICE:
        assert advice not in err
    assert not marker.exists()


def test_a_refused_shard_file_is_described_the_same_way(tmp_path):
    marker = tmp_path / "marker"
    shard = _refused_file(tmp_path / "ckpt_00000001.rank1-of-2.pt", marker)
    with pytest.raises(ValueError) as info:
        _load_shard(shard, 1, 1, 2)
    message = str(info.value)
    assert message.startswith(f"{shard}: not a readable checkpoint shard (it holds objects ")
    for advice in UNSAFE_ADVICE:
        assert advice not in message
    assert not marker.exists()


def test_other_load_failures_keep_their_reason(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Exception) as info:
        torch.load(junk, weights_only=True)
    reason = describe_load_error(info.value)
    assert "weights-only load refuses" not in reason
    assert reason == " ".join(str(info.value).split())
