"""Failure behaviour: NaN loss, missing data, and what a run folder records when a run
fails mid-way (log line, summary.json, emergency checkpoint, skipped samples)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import sphereface2.train.building as building_module
import sphereface2.train.run as run_module
from sphereface2.data.recordio import RecordIOReader, RecordIOWriter, pack_record, unpack_record
from sphereface2.data.recordio_dataset import RecordIODataset
from sphereface2.registry import UnknownNameError
from sphereface2.train.checkpoint import CheckpointWriteError, list_checkpoints, load_checkpoint
from sphereface2.train.failure import TrainingError, advice
from sphereface2.train.sampler import ResumableSampler
from sphereface2.train.trainer import NonFiniteLossError, train


def _nan_after(head: nn.Module, after: int) -> nn.Module:
    """Make ``head``'s loss NaN from its ``after``-th call on (the head keeps its type,
    which the trainer relies on for sharded and replicated parameters)."""
    real_forward, calls = head.forward, [0]

    def forward(embeddings, labels, return_stats=False):
        calls[0] += 1
        out = real_forward(embeddings, labels, return_stats=return_stats)
        if calls[0] >= after:
            nan = torch.tensor(float("nan"))
            return (out[0] * nan, out[1]) if return_stats else out * nan
        return out

    head.forward = forward
    return head


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_checkpoint(
    tmp_path, tiny_config, monkeypatch
):
    real_build_head = run_module.build_training_head
    monkeypatch.setattr(
        run_module, "build_training_head", lambda *a: _nan_after(real_build_head(*a), 5)
    )
    cfg = tiny_config(runtime={"checkpoint_every": 2})
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at iteration 5") as info:
        train(cfg, tmp_path / "run", echo=False)
    assert "ckpt_00000004.pt" in str(info.value)
    assert [it for it, _ in list_checkpoints(tmp_path / "run")] == [2, 4]
    good = load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])
    assert all(torch.isfinite(t).all() for t in good["backbone"].values())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["iteration"] == 4
    assert "iteration 5" in (tmp_path / "run" / "log.txt").read_text()


def test_missing_training_data_is_named(tmp_path, tiny_config):
    cfg = tiny_config(data={"train": str(tmp_path / "no_such_set")})
    with pytest.raises(FileNotFoundError, match="no_such_set"):
        train(cfg, tmp_path / "run", echo=False)


def test_missing_validation_file_is_named(tmp_path, tiny_config):
    cfg = tiny_config(data={"val": [{"name": "lfw", "path": str(tmp_path / "lfw.bin")}]})
    with pytest.raises(FileNotFoundError, match=r"validation set 'lfw': .*lfw.bin"):
        train(cfg, tmp_path / "run", echo=False)


def test_unknown_backbone_in_code_built_config_lists_names(tmp_path, tiny_config):
    cfg = tiny_config()
    cfg.model.backbone = "resnet9000"  # bypasses load-time validation
    with pytest.raises(UnknownNameError, match="valid names: .*sfnet20"):
        train(cfg, tmp_path / "run", echo=False)


def test_missing_resume_checkpoint_is_named(tmp_path, tiny_config):
    with pytest.raises(FileNotFoundError, match="nope.pt: checkpoint file not found"):
        train(tiny_config(), tmp_path / "run", resume=tmp_path / "nope.pt", echo=False)


def test_fp16_on_cpu_is_refused(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        train(tiny_config(runtime={"amp": "fp16"}), tmp_path / "run", echo=False)


def test_cuda_without_gpu_is_refused(tmp_path, tiny_config):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train(tiny_config(), tmp_path / "run", device="cuda", echo=False)


# --------------------------------------------------------------------------------------
# A failure mid-run leaves a trace: log line, summary.json, emergency checkpoint
# --------------------------------------------------------------------------------------


def _index_read_at(cfg, iteration: int) -> int:
    """The first dataset index of the batch that ``iteration`` (1-based) reads in epoch 0."""
    sampler = ResumableSampler(24, shuffle=True, seed=cfg.seed, drop_last=True)
    return sampler.epoch_indices(0)[(iteration - 1) * cfg.data.batch_size]


def _with_junk_record(tiny_data: Path, out: Path, index: int) -> tuple[Path, int]:
    """A copy of the tiny set whose image ``index`` is undecodable; (folder, record key)."""
    out.mkdir()
    shutil.copy(tiny_data / "property", out / "property")
    key = int(RecordIODataset(tiny_data).keys[index])
    reader = RecordIOReader(tiny_data / "train.rec", tiny_data / "train.idx")
    with RecordIOWriter(out / "train.rec", out / "train.idx") as writer:
        for k in sorted(reader.key_array.tolist()):
            payload = reader.read(k)
            if k == key:
                header, _ = unpack_record(payload)
                payload = pack_record(header, b"not a jpeg")
            writer.write(k, payload)
    return out, key


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_record_mid_run_leaves_a_trace_and_an_exact_emergency_checkpoint(
    tmp_path, tiny_data, tiny_config, assert_same_state, workers
):
    base = {"num_workers": workers}
    index = _index_read_at(tiny_config(), 3)
    data, key = _with_junk_record(tiny_data, tmp_path / "data", index)
    cfg = tiny_config(data={**base, "train": str(data)}, runtime={"checkpoint_every": 100})
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        train(cfg, run, echo=False)
    message, emergency = str(info.value), run / "checkpoints" / "ckpt_00000002.pt"
    assert message.startswith("training failed at iteration 3: ") and "\n" not in message
    assert f"train.rec record {key}" in message  # one line, even from a DataLoader worker
    assert f"Last good checkpoint: {emergency} (written now, as an emergency" in message
    assert "data.skip_corrupt=true" in message
    assert message in (run / "log.txt").read_text()
    summary = _summary(run)
    assert summary["status"] == "failed" and summary["iteration"] == 2
    assert summary["failed_at_iteration"] == 3 and f"record {key}" in summary["error"]
    assert summary["emergency_checkpoint"] == str(emergency) == summary["last_checkpoint"]
    assert (run / "curves.png").is_file()

    # the emergency checkpoint is exactly the state after iteration 2 (data position and
    # RNG rewound to the start of iteration 3): the same as a clean run stopped there
    clean = train(tiny_config(data=base), tmp_path / "clean", stop_after=2, echo=False)
    assert_same_state(load_checkpoint(emergency), load_checkpoint(clean.last_checkpoint))
    if workers == 0:  # repaired data (data.train may change on resume) continues exactly
        train(tiny_config(runtime={"checkpoint_every": 100}), run, resume="auto", echo=False)
        straight = train(tiny_config(), tmp_path / "straight", echo=False)
        final = list_checkpoints(run)[-1][1]
        assert_same_state(load_checkpoint(final), load_checkpoint(straight.last_checkpoint))


class _BadLabel:
    """A training set whose sample ``index`` comes with label 9 (of 4 classes)."""

    def __init__(self, dataset, index: int) -> None:
        self.dataset, self.index = dataset, index
        self.num_classes, self.labels = dataset.num_classes, dataset.labels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        image, label = self.dataset[i]
        return image, 9 if i == self.index else label


@pytest.mark.filterwarnings("ignore:skipping corrupt sample")
def test_a_run_stopped_by_a_corrupt_record_resumes_with_skip_corrupt(
    tmp_path, tiny_data, tiny_config
):
    """The advice works: data.skip_corrupt may change on resume (RESUME_SAFE_KEYS)."""
    data, key = _with_junk_record(tiny_data, tmp_path / "data", _index_read_at(tiny_config(), 3))
    run, every = tmp_path / "run", {"checkpoint_every": 100}
    with pytest.raises(TrainingError) as info:
        train(tiny_config(data={"train": str(data)}, runtime=every), run, echo=False)
    assert (
        "or continue it skipping unreadable samples with --resume auto data.skip_corrupt=true"
    ) in str(info.value)
    cfg = tiny_config(data={"train": str(data), "skip_corrupt": True}, runtime=every)
    result = train(cfg, run, resume="auto", echo=False)
    assert result.status == "completed" and result.iteration == 8
    summary = _summary(run)
    assert summary["resumed_from_iteration"] == 2 and summary["skipped_samples"] == 1
    after_resume = (run / "log.txt").read_text().split("resuming", 1)[1]
    skipped = [line for line in after_resume.splitlines() if "skipped an unreadable" in line]
    assert len(skipped) == 1 and f"train.rec record {key}" in skipped[0]


@pytest.mark.parametrize("batch_norm", [False, True], ids=["no-buffers", "batchnorm"])
def test_label_out_of_range_mid_run(tmp_path, tiny_config, monkeypatch, batch_norm):
    index = _index_read_at(tiny_config(), 3)
    real_open = building_module.open_training_set
    monkeypatch.setattr(
        building_module, "open_training_set", lambda *a, **k: _BadLabel(real_open(*a, **k), index)
    )
    options = {"width": 0.125, "batch_norm": batch_norm}
    cfg = tiny_config(model={"options": options}, runtime={"checkpoint_every": 100})
    run = tmp_path / "run"
    pattern = r"^training failed at iteration 3: .*label 9 .*\[0, 4\)"
    with pytest.raises(TrainingError, match=pattern):
        train(cfg, run, echo=False)
    summary = _summary(run)
    assert summary["status"] == "failed" and summary["failed_at_iteration"] == 3
    assert "label 9" in summary["error"]
    if batch_norm:  # the forward pass already moved BatchNorm's statistics: not intact
        assert list_checkpoints(run) == [] and summary["emergency_checkpoint"] is None
        assert (
            "none was written yet (no emergency checkpoint: the state after iteration 2"
            in (run / "log.txt").read_text()
        )
    else:
        assert [it for it, _ in list_checkpoints(run)] == [2]


def _nan_embeddings_from(backbone: nn.Module, call: int) -> nn.Module:
    real_forward, calls = backbone.forward, [0]

    def forward(images):
        calls[0] += 1
        out = real_forward(images)
        return out * float("nan") if calls[0] >= call else out

    backbone.forward = forward
    return backbone


def test_non_finite_embedding_is_caught_before_the_head(tmp_path, tiny_config, monkeypatch):
    real_build = run_module.build_model
    monkeypatch.setattr(
        run_module, "build_model", lambda cfg: _nan_embeddings_from(real_build(cfg), 3)
    )
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:  # not the head's ValueError
        train(tiny_config(runtime={"checkpoint_every": 100}), run, echo=False)
    message = str(info.value)
    assert message.startswith("non-finite embedding at iteration 3")
    assert "ckpt_00000002.pt (written now, as an emergency checkpoint)" in message
    assert "lower optim.lr (now 0.05)" in message and "optim.max_grad_norm" in message
    assert "bf16" not in message  # advice for fp16 runs only
    summary = _summary(run)
    assert summary["failed_at_iteration"] == 3 and summary["iteration"] == 2
    good = load_checkpoint(run / "checkpoints" / "ckpt_00000002.pt")
    assert all(torch.isfinite(t).all() for t in good["backbone"].values())


def test_no_emergency_checkpoint_after_a_non_finite_update(tmp_path, tiny_config, monkeypatch):
    real_build = run_module.build_sgd

    def build_sgd(*args, **kwargs):  # the 3rd update writes NaN into the first conv
        optimizer, calls = real_build(*args, **kwargs), [0]
        real_step = optimizer.step

        def step(*a, **k):
            out = real_step(*a, **k)
            calls[0] += 1
            if calls[0] == 3:
                with torch.no_grad():
                    optimizer.param_groups[0]["params"][0].fill_(float("nan"))
            return out

        optimizer.step = step
        return optimizer

    monkeypatch.setattr(run_module, "build_sgd", build_sgd)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="non-finite embedding at iteration 4") as info:
        train(tiny_config(runtime={"checkpoint_every": 2}), run, echo=False)
    assert [it for it, _ in list_checkpoints(run)] == [2]
    assert "ckpt_00000002.pt (no emergency checkpoint: the state after iteration 3 is not" in str(
        info.value
    )
    assert _summary(run)["emergency_checkpoint"] is None


def test_advice_for_fp16_and_clipped_runs(tiny_config):
    cfg = tiny_config(runtime={"amp": "fp16"}, optim={"max_grad_norm": 2.0})
    text = advice(NonFiniteLossError("x"), cfg, "step")
    assert "use runtime.amp=bf16 instead of fp16" in text
    assert "lower optim.max_grad_norm (now 2)" in text


def test_checkpoint_write_failure_mid_run(tmp_path, tiny_config, monkeypatch):
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):  # what torch raises when the disk fills up
        if isinstance(obj, dict) and obj.get("iteration") == 4:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        train(tiny_config(runtime={"checkpoint_every": 2}), run, echo=False)
    message = str(info.value)
    target = run / "checkpoints" / "ckpt_00000004.pt"
    assert f"iteration 4: could not write checkpoint {target}: disk full? (" in message
    assert "unexpected pos 64 vs 0" in message and "Free some disk space" in message
    assert "ckpt_00000002.pt (no emergency checkpoint: checkpoints cannot be written)" in message
    assert isinstance(info.value.__cause__, CheckpointWriteError)
    assert isinstance(info.value.__cause__, OSError)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_00000002.pt"]
    assert _summary(run)["status"] == "failed"


@pytest.mark.filterwarnings("ignore:skipping corrupt sample")
@pytest.mark.parametrize("workers", [0, 2])
def test_skipped_samples_are_logged_and_counted(tmp_path, tiny_data, tiny_config, workers):
    data, key = _with_junk_record(tiny_data, tmp_path / "data", _index_read_at(tiny_config(), 3))
    cfg = tiny_config(data={"train": str(data), "num_workers": workers, "skip_corrupt": True})
    run = tmp_path / "run"
    result = train(cfg, run, echo=False)  # 8 iterations: the bad sample is met in 2 epochs
    assert result.status == "completed"
    log = (run / "log.txt").read_text()
    skipped = [line for line in log.splitlines() if "skipped an unreadable sample" in line]
    assert len(skipped) == 1 and f"train.rec record {key}" in skipped[0]
    assert "skipped 1 unreadable sample(s)" in log
    assert _summary(run)["skipped_samples"] == 1
