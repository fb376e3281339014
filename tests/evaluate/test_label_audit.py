"""The label audit: scores against a float64 loop reference, the trained labels (noise record
or re-derived noise), a setup where the changed labels are known to rank first, other heads,
and errors that name the file."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_audit_fixture as fx  # noqa: E402

from sphereface2.data.label_noise import inject_label_noise  # noqa: E402
from sphereface2.evaluate.label_audit import audit_labels, score_against_proxies  # noqa: E402

LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return fx.write_data(tmp_path_factory.mktemp("audit_data"), LABELS)


def _reference(emb: np.ndarray, weight: np.ndarray, labels: list[int]):
    """(own, best other class, best other cosine) per sample, from loop cosines."""
    rows = fx.reference_cosines(emb, weight)
    own, other_class, other = [], [], []
    for row, y in zip(rows, labels):
        own.append(row[y])
        best = max((c for c in range(len(row)) if c != y), key=lambda c: row[c])
        other_class.append(best)
        other.append(row[best])
    return np.array(own), np.array(other_class), np.array(other)


@pytest.mark.parametrize("flip", [True, False])
def test_scores_and_ranking_match_a_float64_loop_reference(tmp_path, data, flip):
    state = fx.write_run(tmp_path / "run", data, num_classes=5, params={"r": 30.0, "m": 0.3})
    result = audit_labels(tmp_path / "run", flip=flip, batch_size=5)
    emb = fx.clean_embeddings(data, flip=flip).double().numpy()
    own, other_class, other = _reference(emb, state["weight"].numpy(), LABELS)
    np.testing.assert_allclose(result.scores.own, own, atol=1e-5)
    np.testing.assert_array_equal(result.scores.best_other_class, other_class)
    np.testing.assert_allclose(result.scores.best_other, other, atol=1e-5)
    np.testing.assert_allclose(result.scores.margin, own - other, atol=1e-5)
    np.testing.assert_array_equal(result.order, np.argsort(own, kind="stable"))
    # SphereFace2's positive logit, margin C: r * (g(cos) - m) + b, g(z) = 2((z+1)/2)^t - 1
    bias = float(state["bias"])
    logit = [30.0 * (2 * ((c + 1) / 2) ** 3 - 1 - 0.3) + bias for c in own]
    np.testing.assert_allclose(result.positive_logit, logit, atol=1e-3)
    assert result.logit_rejects["rejected"] == sum(v < 0 for v in logit)
    # no noise on the run's own training set: nothing was injected, so no metrics
    assert result.metrics is None and not result.injected.any()
    assert "injected no label noise" in result.label_source
    assert result.ids == [str(10 + i) for i in range(len(LABELS))]  # the record keys
    first = result.rows(1)[0]
    assert first["index"] == int(np.argmin(own)) and first["injected"] == "no"


def test_chunked_scoring_equals_one_chunk_and_the_reference():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(23, 6)).astype(np.float32)
    proxies = torch.from_numpy(rng.normal(size=(9, 6)).astype(np.float32)) * 3  # not unit
    labels = rng.integers(0, 9, 23)
    chunked = score_against_proxies(emb, proxies, labels, chunk_size=4)
    whole = score_against_proxies(emb, proxies, labels, chunk_size=1000)
    np.testing.assert_array_equal(chunked.own, whole.own)
    own, other_class, other = _reference(emb, proxies.numpy(), labels.tolist())
    np.testing.assert_allclose(chunked.own, own, atol=1e-6)
    np.testing.assert_array_equal(chunked.best_other_class, other_class)
    np.testing.assert_allclose(chunked.best_other, other, atol=1e-6)


def test_one_class_has_no_best_other():
    scores = score_against_proxies(np.ones((2, 3), np.float32), torch.ones(1, 3), [0, 0])
    assert scores.best_other_class.tolist() == [-1, -1] and np.isnan(scores.best_other).all()


def test_known_mislabels_rank_first_with_precision_one(tmp_path):
    run, _, noisy = fx.per_sample_classes_run(tmp_path)
    result = audit_labels(run)
    changed = set(noisy.changed_indices.tolist())
    n = len(changed)
    assert set(result.order[:n].tolist()) == changed
    m = result.metrics
    assert (m.precision_at_n, m.recall_at_n, m.average_precision, m.roc_auc) == (1, 1, 1, 1)
    assert m.num_changed == n and m.base_rate == n / 12
    np.testing.assert_array_equal(result.labels, noisy.labels)
    assert result.label_source == f"read from {run / 'label_noise.json'}"
    assert result.noise["changed"] == n and result.noise["corrupted"] == len(
        noisy.corrupted_indices
    )
    assert [r["injected"] for r in result.rows()] == ["yes"] * n + ["no"] * (12 - n)
    summary = result.to_dict()
    json.dumps(summary)  # plain JSON
    assert summary["metrics"]["precision_at_n"] == 1.0
    assert summary["worst"][0]["injected"] == "yes"


def test_noise_is_re_derived_from_the_config_without_a_record(tmp_path):
    run, _, noisy = fx.per_sample_classes_run(tmp_path, p=0.5, seed=4)
    with_record = audit_labels(run, flip=False)
    (run / "label_noise.json").unlink()
    derived = audit_labels(run, flip=False)
    expected, _ = inject_label_noise(list(range(12)), 0.5, 12, 4)
    np.testing.assert_array_equal(derived.labels, expected)
    np.testing.assert_array_equal(derived.labels, with_record.labels)
    np.testing.assert_array_equal(derived.injected, with_record.injected)
    assert derived.label_source.startswith("re-derived with inject_label_noise(p=0.5")
    assert "has no label_noise.json" in derived.label_source
    assert derived.metrics == with_record.metrics


def test_a_record_for_other_data_is_refused_naming_it(tmp_path):
    run, _, _ = fx.per_sample_classes_run(tmp_path)
    record = run / "label_noise.json"
    other = fx.write_data(tmp_path / "other", list(range(10)))
    with pytest.raises(ValueError, match=rf"{record}: records noise for 12 samples .* has 10"):
        audit_labels(run, other)
    raw = json.loads(record.read_text())
    raw["clean_labels"][0] += 1
    record.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=rf"{record}: sample {raw['corrupted_indices'][0]}'s"):
        audit_labels(run)


@pytest.mark.parametrize(
    ("head", "params"),
    [("cosface", {}), ("arcface", {}), ("normface", {}), ("sphereface", {}), ("softmax", {})],
)
def test_every_head_with_proxies(tmp_path, data, head, params):
    state = fx.write_run(tmp_path / "run", data, num_classes=4, head=head, params=params)
    result = audit_labels(tmp_path / "run", flip=False)
    emb = fx.clean_embeddings(data, flip=False).double().numpy()
    own, _, _ = _reference(emb, state["weight"].numpy(), LABELS)
    np.testing.assert_allclose(result.scores.own, own, atol=1e-5)
    assert result.positive_logit is None and result.logit_rejects is None
    assert any("softmax head" in note for note in result.notes) == (head == "softmax")


def test_errors_name_the_file(tmp_path, data):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'run' / 'model.pt'}: not found"):
        (tmp_path / "run").mkdir()
        audit_labels(tmp_path / "run")
    fx.write_run(tmp_path / "run", data, num_classes=4, with_head=False)
    with pytest.raises(ValueError, match=rf"{tmp_path / 'run' / 'model.pt'}: holds no head"):
        audit_labels(tmp_path / "run")
    fx.write_run(tmp_path / "run", data, num_classes=3)  # label 3 is beyond the head
    with pytest.raises(ValueError, match=r"sample 9 has label 3 but the head in .* has 3"):
        audit_labels(tmp_path / "run")


def test_a_real_training_run_with_label_noise(tmp_path, data):
    """The trainer's own model.pt (averaged, with its head) opens and audits end to end."""
    from sphereface2.config import config_from_dict
    from sphereface2.train.trainer import train

    raw = fx.tiny.train_config_dict()
    raw["data"].update({"train": str(data), "label_noise": {"p": 0.5, "seed": 2}})
    raw["schedule"].update({"iterations": 2, "milestones": []})
    raw["runtime"].update({"device": "cpu", "checkpoint_every": 1, "average_last": 2})
    train(config_from_dict(raw, "tiny noisy run"), tmp_path / "run", echo=False)
    result = audit_labels(tmp_path / "run", out=tmp_path / "audit", top=3)
    expected, _ = inject_label_noise(LABELS, 0.5, 4, 2)
    np.testing.assert_array_equal(result.labels, expected)  # record or re-derived alike
    assert result.metrics is not None and 0 < result.metrics.num_changed < len(LABELS)
    assert math.isfinite(result.metrics.average_precision)
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == [
        "audit.csv",
        "audit.json",
        "audit_worst.png",
    ]
