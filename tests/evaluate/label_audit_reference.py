"""Naive references for the label-audit detection metrics: literal definitions, exact
fractions, no library code."""

from __future__ import annotations

import itertools
from fractions import Fraction


def precision_at_k(suspicion, positive, k):
    """Mean precision of the top k over every ordering consistent with the suspicion (each
    order of tied samples equally likely)."""
    n = len(suspicion)
    total, orders = Fraction(0), 0
    for order in itertools.permutations(range(n)):
        if any(suspicion[a] < suspicion[b] for a, b in zip(order, order[1:])):
            continue  # not sorted by decreasing suspicion
        total += Fraction(sum(1 for i in order[:k] if positive[i]), k)
        orders += 1
    return total / orders


def average_precision(suspicion, positive):
    """Sum over distinct thresholds t (decreasing) of (recall(t) - previous recall) x
    precision(t), where everything with suspicion >= t is flagged."""
    num_pos = sum(1 for y in positive if y)
    ap, previous_recall = Fraction(0), Fraction(0)
    for t in sorted(set(suspicion), reverse=True):
        flagged = [y for s, y in zip(suspicion, positive) if s >= t]
        hits = sum(1 for y in flagged if y)
        recall = Fraction(hits, num_pos)
        ap += (recall - previous_recall) * Fraction(hits, len(flagged))
        previous_recall = recall
    return ap


def roc_auc(suspicion, positive):
    """Probability that a positive is more suspect than a negative, ties counting one half."""
    pos = [s for s, y in zip(suspicion, positive) if y]
    neg = [s for s, y in zip(suspicion, positive) if not y]
    wins = Fraction(0)
    for a in pos:
        for b in neg:
            wins += 1 if a > b else Fraction(1, 2) if a == b else 0
    return wins / (len(pos) * len(neg))
