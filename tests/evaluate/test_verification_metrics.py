"""Verification protocols against naive loop references; timing of a 6,000-pair set."""

from __future__ import annotations

import math
import time

import evaluate_loop_reference as ref
import numpy as np
import pytest

from sphereface2.evaluate.roc import roc_auc, roc_curve
from sphereface2.evaluate.verification import (
    INSIGHTFACE_THRESHOLDS,
    best_threshold_accuracy,
    combined_verification,
    cosine_scores,
    evaluate_pairs,
    fuse_flip,
    kfold_accuracy,
    kfold_splits,
    l2_normalize,
    pair_distances,
)


def _pairs(seed: int, n: int, d: int = 8, exact_share: float = 0.3):
    """Random pairs, genuine ones correlated; a share of pairs built from vectors with entries
    in {0, +-0.5, 1} whose squared distances (0.5, 1, 1.5, 2, ...) sit exactly on thresholds."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    e0 = rng.normal(size=(n, d))
    e1 = np.where(same[:, None], e0 + rng.normal(scale=0.9, size=(n, d)), rng.normal(size=(n, d)))
    basis = np.eye(d)
    halves = np.zeros((4, d))
    halves[0, :4] = 0.5
    halves[1, [0, 1, 4, 5]] = 0.5
    halves[2, [0, 2, 4, 6]] = [0.5, -0.5, 0.5, 0.5]
    halves[3, 4:8] = 0.5
    unit = np.concatenate([basis, halves])
    for i in np.flatnonzero(rng.random(n) < exact_share):
        e0[i] = unit[rng.integers(len(unit))]
        e1[i] = unit[rng.integers(len(unit))]
    return e0, e1, same


@pytest.mark.parametrize(("n", "folds"), [(23, 10), (60, 10), (17, 3), (5, 5), (9, 1)])
def test_kfold_splits_match_sklearn_kfold_semantics(n, folds):
    got = kfold_splits(n, folds)
    want = ref.kfold_splits(n, folds)
    assert len(got) == len(want)
    for (tr, te), (rtr, rte) in zip(got, want):
        assert tr.tolist() == rtr and te.tolist() == rte


def test_kfold_splits_reject_too_many_folds():
    with pytest.raises(ValueError, match="cannot split 4 pairs into 10 folds"):
        kfold_splits(4, 10)
    with pytest.raises(ValueError, match="at least 1"):
        kfold_splits(4, 0)


@pytest.mark.parametrize(("seed", "n", "folds"), [(0, 97, 10), (1, 60, 10), (2, 41, 4), (3, 30, 1)])
def test_kfold_accuracy_matches_the_loop_reference(seed, n, folds):
    e0, e1, same = _pairs(seed, n)
    got = kfold_accuracy(e0, e1, same, folds=folds)
    thresholds = INSIGHTFACE_THRESHOLDS.tolist()
    mean, std, accs, best = ref.kfold_accuracy(
        e0.tolist(), e1.tolist(), same.tolist(), folds, thresholds
    )
    np.testing.assert_array_equal(got.fold_accuracies, accs)
    np.testing.assert_array_equal(got.fold_thresholds, best)
    assert got.accuracy == pytest.approx(mean, abs=1e-15)
    assert got.std == pytest.approx(std, abs=1e-12)
    assert got.num_pairs == n
    assert "InsightFace" in str(got) and f"{folds}-fold" in str(got)


@pytest.mark.parametrize(("seed", "far_target"), [(4, 0.05), (5, 0.1), (6, 0.3), (7, 0.02)])
def test_val_at_far_matches_the_loop_reference(seed, far_target):
    e0, e1, same = _pairs(seed, 80)
    thresholds = np.arange(0, 4, 0.01)
    got = kfold_accuracy(e0, e1, same, far_target=far_target, val_thresholds=thresholds)
    val, val_std, far = ref.val_far(
        e0.tolist(), e1.tolist(), same.tolist(), 10, thresholds.tolist(), far_target
    )
    assert got.val == pytest.approx(val, abs=1e-12)
    assert got.val_std == pytest.approx(val_std, abs=1e-12)
    assert got.far == pytest.approx(far, abs=1e-12)
    assert got.far_target == far_target


def test_val_threshold_rule_on_exact_distances():
    # folds=1: impostors at squared distances exactly 1, 2, 3, 4; genuine at exactly 1 and at
    # about 1.75. Thresholds [0, 1, 1.5, 2, 2.5, 3] give FARs [0, 0, .25, .25, .5, .5].
    x = np.array([1.0, 0.0, 0.0, 0.0])
    e1 = np.array(
        [
            [0.5, 0.5, 0.5, 0.5],  # d = 1
            [0.0, 1.0, 0.0, 0.0],  # d = 2
            [-0.5, 0.5, 0.5, 0.5],  # d = 3
            [-1.0, 0.0, 0.0, 0.0],  # d = 4
            [0.5, 0.5, 0.5, 0.5],  # genuine, d = 1
            [0.125, np.sqrt(1 - 0.125**2), 0.0, 0.0],  # genuine, d = 1.75
        ]
    )
    e0 = np.tile(x, (6, 1))
    same = np.array([0, 0, 0, 0, 1, 1], bool)
    np.testing.assert_allclose(pair_distances(e0, e1), [1, 2, 3, 4, 1, 1.75], atol=1e-15)
    vthr = [0.0, 1.0, 1.5, 2.0, 2.5, 3.0]
    # FAR 0.25 is reached at 1.5 and 2.0: scipy's slinear spline gives the last, 2.0.
    got = kfold_accuracy(e0, e1, same, folds=1, far_target=0.25, val_thresholds=vthr)
    assert got.val == 1.0 and got.far == 0.25
    # Between FAR 0.25 (last at 2.0) and 0.5 (first at 2.5): 2.0 + 0.5 * 0.5 = 2.25.
    got = kfold_accuracy(e0, e1, same, folds=1, far_target=0.375, val_thresholds=vthr)
    assert got.val == 1.0 and got.far == 0.5
    # Below every reachable FAR: threshold 0, nothing accepted.
    got = kfold_accuracy(e0, e1, same, folds=1, far_target=0.9, val_thresholds=vthr)
    assert got.val == 0.0 and got.far == 0.0


def test_kfold_with_one_class_still_gives_accuracy():
    # All genuine (as in InsightFace's CI set small_lfw.bin): accuracy is defined, VAL is not.
    rng = np.random.default_rng(0)
    e0 = rng.normal(size=(10, 4))
    e1 = e0 + 0.1 * rng.normal(size=(10, 4))
    same = np.ones(10, bool)
    got = kfold_accuracy(e0, e1, same)
    mean, std, accs, _ = ref.kfold_accuracy(
        e0.tolist(), e1.tolist(), same.tolist(), 10, INSIGHTFACE_THRESHOLDS.tolist()
    )
    assert got.accuracy == pytest.approx(mean) and got.std == pytest.approx(std)
    np.testing.assert_array_equal(got.fold_accuracies, accs)
    assert math.isnan(got.val) and math.isnan(got.far)


def test_kfold_rejects_bad_input():
    e0, e1, same = _pairs(0, 20)
    with pytest.raises(ValueError, match="one flag per pair: 20 pairs"):
        kfold_accuracy(e0, e1, same[:19])
    with pytest.raises(ValueError, match="emb0 and emb1 differ in shape"):
        kfold_accuracy(e0, e1[:, :4], same)
    bad = e0.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="emb0: row 3 is not finite"):
        kfold_accuracy(bad, e1, same)
    bad[3] = 0.0
    with pytest.raises(ValueError, match="emb0: row 3 is a zero vector"):
        kfold_accuracy(bad, e1, same)
    with pytest.raises(ValueError, match="thresholds must be a non-empty"):
        kfold_accuracy(e0, e1, same, thresholds=[])


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_accuracy_matches_the_loop_reference(seed):
    e0, e1, same = _pairs(seed, 150, exact_share=0.6)  # many tied cosines (0, 0.5, 1, ...)
    scores = cosine_scores(e0, e1)
    got = best_threshold_accuracy(scores, same)
    assert got.accuracy == pytest.approx(ref.best_accuracy(scores.tolist(), same.tolist()))
    # The reported threshold achieves the reported accuracy.
    assert np.mean((scores >= got.threshold) == same) == pytest.approx(got.accuracy)
    roc = roc_curve(scores, same)
    assert got.auc == roc_auc(roc)
    assert got.eer == pytest.approx(ref.eer_bisection(scores.tolist(), same.tolist()), abs=1e-12)
    assert [r.fpr for r in got.tpr_at_fpr] == [1e-4, 1e-3, 1e-2] * 2
    assert [r.method for r in got.tpr_at_fpr] == ["nearest"] * 3 + ["interpolated"] * 3
    for r in got.tpr_at_fpr:
        want = (ref.tpr_nearest if r.method == "nearest" else ref.tpr_interpolated)(
            scores.tolist(), same.tolist(), r.fpr
        )
        assert r.tpr == pytest.approx(want)
    assert got.num_genuine == same.sum() and "OpenSphere" in str(got)


def test_best_threshold_on_one_class_and_on_nan():
    got = best_threshold_accuracy([0.2, 0.5, 0.9], [1, 1, 1])
    assert got.accuracy == 1.0 and got.threshold == 0.2
    assert math.isnan(got.eer) and math.isnan(got.auc) and got.tpr_at_fpr == ()
    got = best_threshold_accuracy([0.2, 0.5], [0, 0])
    assert got.accuracy == 1.0 and got.threshold == math.inf
    with pytest.raises(ValueError, match="non-finite.*index 1"):
        best_threshold_accuracy([0.2, np.nan], [0, 1])


def test_fuse_flip_sums_raw_embeddings_then_normalises():
    a = np.array([[3.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 4.0], [-1.0, 1.0]])
    np.testing.assert_allclose(fuse_flip(a, b), [[0.6, 0.8], [0.0, 1.0]])
    # Summing raw (not normalised) embeddings: the larger norm dominates.
    assert fuse_flip(np.array([[10.0, 0.0]]), np.array([[0.0, 1.0]]))[0, 0] > 0.99
    assert fuse_flip(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="differ in shape"):
        fuse_flip(a, b[:1])
    with pytest.raises(ValueError, match="flip-fused embeddings: row 0 is a zero vector"):
        fuse_flip(a, -a)
    with pytest.raises(ValueError, match="2-D"):
        l2_normalize(np.ones(3))


def test_combined_verification_pools_pairs_with_one_threshold():
    sets = []
    for k, n in enumerate([40, 25, 33]):
        e0, e1, same = _pairs(10 + k, n)
        sets.append((f"set{k}", e0 * (k + 1), e1, same))  # scale does not matter
    got = combined_verification(sets, folds=5)
    assert [r.name for r in got.per_set] == ["set0", "set1", "set2"]
    for r, (name, e0, e1, same) in zip(got.per_set, sets):
        alone = evaluate_pairs(e0, e1, same, name, folds=5)
        assert r.kfold.accuracy == alone.kfold.accuracy
        assert r.best_threshold.accuracy == alone.best_threshold.accuracy
    e0 = np.concatenate([s[1] for s in sets])
    e1 = np.concatenate([s[2] for s in sets])
    same = np.concatenate([s[3] for s in sets])
    scores = cosine_scores(e0, e1)
    assert got.combined.name == "combined(set0+set1+set2)"
    assert got.combined.best_threshold.accuracy == pytest.approx(
        ref.best_accuracy(scores.tolist(), same.tolist())
    )
    assert got.combined.kfold.accuracy == kfold_accuracy(e0, e1, same, folds=5).accuracy
    assert got.combined.best_threshold.num_genuine == same.sum()
    assert "combined(set0+set1+set2)" in str(got)


def test_combined_verification_names_the_bad_set():
    e0, e1, same = _pairs(0, 20)
    with pytest.raises(ValueError, match="verification set 'cplfw'.*one flag per pair"):
        combined_verification([("lfw", e0, e1, same), ("cplfw", e0, e1, same[:5])])
    with pytest.raises(ValueError, match="names must be distinct"):
        combined_verification([("lfw", e0, e1, same), ("lfw", e0, e1, same)])
    with pytest.raises(ValueError, match="at least one"):
        combined_verification([])
    with pytest.raises(ValueError, match="different embedding sizes"):
        combined_verification([("a", e0, e1, same), ("b", e0[:, :4], e1[:, :4], same)])


def test_6000_pairs_evaluate_in_well_under_a_second(capsys):
    rng = np.random.default_rng(0)
    n, d = 6000, 512
    same = np.arange(n) % 600 < 300  # LFW layout: per fold 300 genuine then 300 impostor
    e0 = rng.normal(size=(n, d)).astype(np.float32)
    e1 = np.where(same[:, None], e0 + rng.normal(scale=1.2, size=(n, d)), rng.normal(size=(n, d)))
    start = time.perf_counter()
    result = evaluate_pairs(e0, e1.astype(np.float32), same, name="lfw-like")
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n6,000-pair verification (both protocols, d=512): {elapsed * 1000:.0f} ms")
    assert 0.5 < result.kfold.accuracy <= 1.0
    assert elapsed < 5.0
