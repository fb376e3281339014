"""Detection metrics of the label audit against literal references and hand-worked values."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import label_audit_reference as ref  # noqa: E402

from sphereface2.evaluate.label_audit_metrics import (  # noqa: E402
    average_precision,
    detection_metrics,
    expected_hits_at,
)

# Suspicion 0.8 is shared by a changed and an unchanged sample.
SUSPICION = [0.9, 0.8, 0.8, 0.3, 0.1]
CHANGED = [True, False, True, False, True]


def test_hand_worked_example_with_a_tie():
    m = detection_metrics(-np.array(SUSPICION), CHANGED)  # own score = -suspicion
    # thresholds 0.9, 0.8, 0.3, 0.1: 1/3 * 1 + 1/3 * 2/3 + 0 + 1/3 * 3/5 = 34/45
    assert m.average_precision == pytest.approx(34 / 45, abs=1e-12)
    # positive-negative pairs: (0.9 > 0.8, 0.3), (0.8 = 0.8, > 0.3), (0.1 < both) = 3.5 / 6
    assert m.roc_auc == pytest.approx(7 / 12, abs=1e-12)
    # top 3 = 0.9 and both tied 0.8: two changed
    assert m.precision_at_n == pytest.approx(2 / 3, abs=1e-12)
    assert m.recall_at_n == m.precision_at_n
    assert (m.num_samples, m.num_changed, m.base_rate) == (5, 3, 0.6)
    # a cut through the tie takes half of each tied sample
    assert expected_hits_at(np.array(SUSPICION), np.array(CHANGED), 2) == pytest.approx(1.5)


@pytest.mark.parametrize("seed", range(6))
def test_against_the_literal_references(seed):
    rng = np.random.default_rng(seed)
    n = 7
    suspicion = rng.integers(0, 4, n).astype(float)  # few values: many ties
    changed = np.zeros(n, bool)
    changed[rng.choice(n, rng.integers(1, n), replace=False)] = True
    s, y = suspicion.tolist(), changed.tolist()
    m = detection_metrics(-suspicion, changed)
    k = int(changed.sum())
    assert m.precision_at_n == pytest.approx(float(ref.precision_at_k(s, y, k)), abs=1e-12)
    assert m.average_precision == pytest.approx(float(ref.average_precision(s, y)), abs=1e-12)
    assert m.roc_auc == pytest.approx(float(ref.roc_auc(s, y)), abs=1e-12)
    for cut in range(n + 1):
        expected = ref.precision_at_k(s, y, cut) * cut if cut else 0
        assert expected_hits_at(suspicion, changed, cut) == pytest.approx(float(expected))


def test_perfect_and_reversed_rankings():
    own = np.array([0.1, 0.2, 0.7, 0.8, 0.9])
    changed = np.array([True, True, False, False, False])
    best = detection_metrics(own, changed)
    assert (best.precision_at_n, best.average_precision, best.roc_auc) == (1.0, 1.0, 1.0)
    worst = detection_metrics(-own, changed)
    assert (worst.precision_at_n, worst.roc_auc) == (0.0, 0.0)
    assert worst.average_precision == pytest.approx(ref.average_precision((own).tolist(), changed))


def test_degenerate_inputs_are_refused():
    with pytest.raises(ValueError, match="0 changed of 3"):
        detection_metrics([0.1, 0.2, 0.3], [False, False, False])
    with pytest.raises(ValueError, match="3 changed of 3"):
        detection_metrics([0.1, 0.2, 0.3], [True, True, True])
    with pytest.raises(ValueError, match="non-finite"):
        detection_metrics([0.1, np.nan, 0.3], [True, False, False])
    with pytest.raises(ValueError, match="at least one positive"):
        average_precision([0.1, 0.2], [False, False])
