"""Checkpoint files: atomic writes, pruning, safe loading, averaging."""

from __future__ import annotations

import os

import pytest
import torch

from sphereface2.train import checkpoint as ckpt


def _state(value: float) -> dict:
    return {
        "backbone": {"w": torch.full((2, 2), float(value)), "n": torch.tensor(int(value))},
        "head": {"b": torch.tensor([float(value)])},
    }


def test_save_list_latest_and_prune(tmp_path):
    for it in (5, 10, 15, 20):
        ckpt.save_checkpoint(_state(it), tmp_path / "checkpoints", it, keep_last=2)
    assert [it for it, _ in ckpt.list_checkpoints(tmp_path)] == [15, 20]
    assert ckpt.latest_checkpoint(tmp_path).name == "ckpt_00000020.pt"
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "ckpt_00000020.pt"
    assert ckpt.latest_checkpoint(tmp_path / "nothing") is None
    data = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert data["iteration"] == 20 and data["format"] == ckpt.CHECKPOINT_FORMAT
    assert torch.equal(data["backbone"]["w"], torch.full((2, 2), 20.0))


def test_keep_last_zero_keeps_all(tmp_path):
    for it in range(1, 5):
        ckpt.save_checkpoint(_state(it), tmp_path, it, keep_last=0)
    assert len(ckpt.list_checkpoints(tmp_path)) == 4


def test_failed_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    good = ckpt.save_checkpoint(_state(1), tmp_path, 1)
    before = good.read_bytes()

    def explode(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(_state(1), tmp_path, 1)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]


def test_stale_temp_files_are_ignored_then_removed(tmp_path):
    stale = tmp_path / ".ckpt_00000009.pt.tmp-999999999"
    stale.write_bytes(b"torn")
    assert ckpt.list_checkpoints(tmp_path) == []
    ckpt.save_checkpoint(_state(1), tmp_path, 1)
    assert not stale.exists()


def test_loading_rejects_foreign_and_unsafe_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1)}, plain)
    with pytest.raises(ValueError, match="plain.pt: expected a sphereface2-checkpoint"):
        ckpt.load_checkpoint(plain)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(64))
    with pytest.raises(ValueError, match="garbage.pt: not a readable"):
        ckpt.load_checkpoint(garbage)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "x": Evil()}, evil)
    with pytest.raises(ValueError, match="evil.pt: not a readable"):
        ckpt.load_checkpoint(evil)
    newer = tmp_path / "newer.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "version": 99}, newer)
    with pytest.raises(ValueError, match="version 99"):
        ckpt.load_checkpoint(newer)


def test_average_checkpoints(tmp_path):
    paths = [ckpt.save_checkpoint(_state(v), tmp_path, i) for i, v in enumerate((1, 2, 6))]
    avg = ckpt.average_checkpoints(paths)
    assert torch.equal(avg["backbone"]["w"], torch.full((2, 2), 3.0))
    assert avg["backbone"]["n"].item() == 6  # integer buffers come from the newest
    assert avg["head"]["b"].dtype == torch.float32 and avg["head"]["b"].item() == 3.0


def test_average_rejects_mismatched_models(tmp_path):
    a = ckpt.save_checkpoint(_state(1), tmp_path, 1)
    other = _state(2)
    other["backbone"]["w"] = torch.zeros(3, 2)
    b = ckpt.save_checkpoint(other, tmp_path, 2)
    with pytest.raises(ValueError, match=r"ckpt_00000002.pt: w has shape \(3, 2\)"):
        ckpt.average_checkpoints([a, b])
    with pytest.raises(ValueError, match="no checkpoint"):
        ckpt.average_checkpoints([])


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 8832 vs 8720"),
        OSError(28, "No space left on device"),
    ],
    ids=["torch-unexpected-pos", "enospc"],
)
def test_failed_write_is_a_named_os_error_and_keeps_the_old_files(tmp_path, monkeypatch, failure):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(_state(1), folder, 1)
    before = (folder / "ckpt_00000001.pt").read_bytes()

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")  # torch has written part of the file
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    target = folder / "ckpt_00000002.pt"
    with pytest.raises(ckpt.CheckpointWriteError) as info:
        ckpt.save_checkpoint(_state(2), folder, 2)
    assert isinstance(info.value, OSError) and info.value.__cause__ is failure
    message = str(info.value)
    assert message.startswith(f"could not write checkpoint {target}: disk full? (")
    assert " ".join(str(failure).split()) in message
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt_00000001.pt"]  # no temp, no torn
    assert (folder / "ckpt_00000001.pt").read_bytes() == before


def test_a_programming_error_is_not_reported_as_a_full_disk(tmp_path, monkeypatch):
    def unpicklable(obj, handle, *args, **kwargs):
        raise TypeError("cannot pickle 'generator' object")

    monkeypatch.setattr(torch, "save", unpicklable)
    with pytest.raises(TypeError, match="cannot pickle"):
        ckpt.atomic_save({"x": 1}, tmp_path / "f.pt")
    assert list(tmp_path.iterdir()) == []
