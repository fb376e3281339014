"""ROC, AUC, EER and TPR@FPR against naive loop references, ties and degenerate inputs."""

from __future__ import annotations

import math

import evaluate_loop_reference as ref
import numpy as np
import pytest

from sphereface2.evaluate.roc import (
    TruncatedRocError,
    equal_error_rate,
    roc_auc,
    roc_curve,
    roc_curve_from_top_impostors,
    tpr_at_fpr,
    validate_scores_labels,
)


def _tied_data(seed: int, n: int = 120, levels: int = 15):
    """Scores on a coarse grid (many ties, also across classes), genuine ones shifted up."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    scores = rng.integers(0, levels, size=n) + labels * rng.integers(0, 6, size=n)
    return (scores / 4.0).astype(np.float64), labels


def test_hand_computed_example_shows_both_read_conventions():
    # Points (fpr, tpr): (0,0) (0,1/3) (1/3,2/3) (1/3,1) (2/3,1) (1,1); 0.8 is a cross-class tie.
    scores = [0.9, 0.8, 0.8, 0.7, 0.6, 0.5]
    labels = [1, 1, 0, 1, 0, 0]
    roc = roc_curve(scores, labels)
    np.testing.assert_array_equal(roc.thresholds, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_array_equal(roc.true_accepts, [0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(roc.false_accepts, [0, 0, 1, 1, 2, 3])
    assert roc_auc(roc) == pytest.approx(5 / 6)
    assert equal_error_rate(roc) == pytest.approx(1 / 3)
    near, interp = tpr_at_fpr(roc, [1 / 3], ("nearest", "interpolated"))
    # On the vertical segment at fpr 1/3: InsightFace takes its top, OpenSphere its bottom.
    assert near.method == "nearest" and near.tpr == pytest.approx(1.0)
    assert near.threshold == 0.7 and near.fpr_used == pytest.approx(1 / 3)
    assert interp.method == "interpolated" and interp.tpr == pytest.approx(2 / 3)
    assert math.isnan(interp.threshold)
    near, interp = tpr_at_fpr(roc, [0.1])
    assert near.tpr == pytest.approx(1 / 3)
    assert interp.tpr == pytest.approx(1 / 3 + 0.1)
    assert "nearest ROC point, InsightFace" in str(near)
    assert "linear interpolation, OpenSphere" in str(interp)


@pytest.mark.parametrize("seed", range(6))
def test_roc_points_match_loop_reference_with_ties(seed):
    scores, labels = _tied_data(seed)
    roc = roc_curve(scores, labels)
    thresholds, tas, fas = ref.roc_points(scores.tolist(), labels.tolist())
    np.testing.assert_array_equal(roc.thresholds, thresholds)
    np.testing.assert_array_equal(roc.true_accepts, tas)
    np.testing.assert_array_equal(roc.false_accepts, fas)
    assert roc.num_genuine == labels.sum() and roc.num_impostor == (~labels).sum()


@pytest.mark.parametrize("seed", range(6))
def test_auc_and_eer_match_loop_references(seed):
    scores, labels = _tied_data(seed)
    roc = roc_curve(scores, labels)
    assert roc_auc(roc) == pytest.approx(ref.mann_whitney_auc(scores.tolist(), labels.tolist()))
    assert equal_error_rate(roc) == pytest.approx(
        ref.eer_bisection(scores.tolist(), labels.tolist()), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(8))
def test_tpr_at_fpr_both_methods_match_loop_references(seed):
    scores, labels = _tied_data(seed, n=150, levels=8 + seed)
    if seed % 2:  # continuous scores: long evenly spaced runs that sklearn drops
        scores = np.random.default_rng(seed).normal(size=scores.shape) + 1.5 * labels
    roc = roc_curve(scores, labels)
    n_imp = int((~labels).sum())
    # Exact ROC FPRs (vertical segments), midpoints and arbitrary values.
    targets = [1 / n_imp, 3 / n_imp, 2.5 / n_imp, 0.01, 0.05, 0.1, 0.3, 0.5, 1.0]
    got = tpr_at_fpr(roc, targets)
    near = got[: len(targets)]
    interp = got[len(targets) :]
    for t, n, i in zip(targets, near, interp):
        assert n.method == "nearest" and i.method == "interpolated"
        assert n.fpr == t and i.fpr == t
        assert n.tpr == pytest.approx(ref.tpr_nearest(scores.tolist(), labels.tolist(), t))
        assert i.tpr == pytest.approx(ref.tpr_interpolated(scores.tolist(), labels.tolist(), t))


def test_single_method_and_order():
    scores, labels = _tied_data(0)
    roc = roc_curve(scores, labels)
    out = tpr_at_fpr(roc, [0.5, 0.1], "interpolated")
    assert [o.fpr for o in out] == [0.5, 0.1]
    assert all(o.method == "interpolated" for o in out)
    with pytest.raises(ValueError, match="unknown TPR read method 'closest'"):
        tpr_at_fpr(roc, [0.1], "closest")
    with pytest.raises(ValueError, match=r"target FPR must be in \(0, 1\]"):
        tpr_at_fpr(roc, [0.0])
    with pytest.raises(ValueError, match=r"target FPR must be in \(0, 1\]"):
        tpr_at_fpr(roc, [1.5])


def test_perfect_and_inverted_separation():
    roc = roc_curve([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0])
    assert roc_auc(roc) == 1.0 and equal_error_rate(roc) == 0.0
    assert all(r.tpr == 1.0 for r in tpr_at_fpr(roc, [1e-6, 0.5]))
    roc = roc_curve([0.0, 1.0, 2.0, 3.0], [1, 1, 0, 0])
    assert roc_auc(roc) == 0.0 and equal_error_rate(roc) == 1.0


def test_all_scores_tied_gives_the_diagonal():
    roc = roc_curve([0.5] * 6, [1, 0, 1, 0, 0, 1])
    assert len(roc) == 2
    assert roc_auc(roc) == 0.5 and equal_error_rate(roc) == pytest.approx(0.5)
    near, interp = tpr_at_fpr(roc, [0.25])
    assert near.tpr == 0.0 and interp.tpr == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("labels", "what"), [([1, 1, 1], "3 genuine and 0 impostor"), ([0, 0], "0 genuine and 2")]
)
def test_single_class_is_a_clear_error(labels, what):
    with pytest.raises(ValueError, match=f"at least one genuine and one impostor.*{what}"):
        roc_curve(np.linspace(0, 1, len(labels)), labels)


def test_non_finite_scores_are_rejected_naming_the_index():
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\).*first at index 1: nan"):
        roc_curve([0.1, np.nan, 0.3, np.nan], [1, 0, 1, 0])
    with pytest.raises(ValueError, match="first at index 2: inf"):
        roc_curve([0.1, 0.2, np.inf], [1, 0, 1])
    with pytest.raises(ValueError, match="first at index 0: -inf"):
        validate_scores_labels([-np.inf], [1])


def test_bad_shapes_and_labels_are_rejected():
    with pytest.raises(ValueError, match="differ in length: 3 scores, 2 labels"):
        roc_curve([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="must be 1-D"):
        roc_curve([[0.1, 0.2]], [[1, 0]])
    with pytest.raises(ValueError, match="empty input"):
        roc_curve([], [])
    with pytest.raises(ValueError, match="index 1 holds 2"):
        roc_curve([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="must be real numbers"):
        roc_curve(["a", "b"], [1, 0])


def test_truncated_roc_reads_the_same_as_the_full_one():
    rng = np.random.default_rng(3)
    gen = rng.normal(2.0, 1.0, size=400)
    imp = np.round(rng.normal(0.0, 1.0, size=20000), 2)  # ties, also at the cut
    full = roc_curve(np.concatenate([gen, imp]), np.r_[np.ones(400), np.zeros(20000)])
    top = np.sort(imp)[::-1][:600]
    part = roc_curve_from_top_impostors(gen, top, num_impostor=imp.shape[0])
    assert not part.complete
    # Every point kept is exact.
    k = len(part)
    np.testing.assert_array_equal(part.thresholds, full.thresholds[:k])
    np.testing.assert_array_equal(part.false_accepts, full.false_accepts[:k])
    np.testing.assert_array_equal(part.true_accepts, full.true_accepts[:k])
    targets = [1e-4, 1e-3, 5e-3, 1e-2]
    for a, b in zip(tpr_at_fpr(part, targets), tpr_at_fpr(full, targets)):
        assert a == b
    with pytest.raises(TruncatedRocError, match="keep more impostor scores"):
        tpr_at_fpr(part, [0.2], "nearest")
    with pytest.raises(TruncatedRocError, match="keep more impostor scores"):
        tpr_at_fpr(part, [0.2], "interpolated")
    with pytest.raises(ValueError, match="complete ROC"):
        roc_auc(part)
    with pytest.raises(ValueError, match="complete ROC"):
        equal_error_rate(part)
    # Keeping every impostor gives the complete curve.
    whole = roc_curve_from_top_impostors(gen, imp, num_impostor=imp.shape[0])
    assert whole.complete and roc_auc(whole) == roc_auc(full)
