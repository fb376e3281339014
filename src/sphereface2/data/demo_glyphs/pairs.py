"""Verification pairs for the demo test split, laid out like LFW.

``num_pairs`` pairs form 10 folds in file order; each fold lists its genuine pairs first,
then as many impostor pairs. Identities are dealt to folds without overlap, so every
fold of the InsightFace 10-fold protocol is scored on identities the threshold-picking
folds never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

NUM_FOLDS = 10


@dataclass(frozen=True)
class PairLayout:
    """Pairs over a test image array where image ``i * per_identity + k`` is sample k of identity i.

    ``left``, ``right`` are image indices, ``issame`` the flags and ``fold`` the fold of
    each pair (non-decreasing).
    """

    left: np.ndarray
    right: np.ndarray
    issame: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.issame)


def check_pair_parameters(num_identities: int, per_identity: int, num_pairs: int) -> None:
    """Raise ValueError naming the parameter when the pairs cannot be drawn."""
    if num_pairs <= 0 or num_pairs % (2 * NUM_FOLDS):
        raise ValueError(
            f"num_pairs must be a positive multiple of {2 * NUM_FOLDS} "
            f"({NUM_FOLDS} folds, half genuine and half impostor), got {num_pairs}"
        )
    if num_identities < 2 * NUM_FOLDS:
        raise ValueError(
            f"test_identities must be at least {2 * NUM_FOLDS} so each of the {NUM_FOLDS} "
            f"identity-disjoint folds has two identities for impostor pairs, got {num_identities}"
        )
    if per_identity < 2:
        raise ValueError(
            f"test_samples_per_identity must be at least 2 for genuine pairs, got {per_identity}"
        )
    per_fold = num_pairs // (2 * NUM_FOLDS)
    smallest = num_identities // NUM_FOLDS
    genuine_room = smallest * per_identity * (per_identity - 1) // 2
    if genuine_room < per_fold:
        raise ValueError(
            f"num_pairs={num_pairs} needs {per_fold} distinct genuine pairs per fold but a fold "
            f"of {smallest} identities with test_samples_per_identity={per_identity} has only "
            f"{genuine_room}; raise test_identities or test_samples_per_identity"
        )
    impostor_room = smallest * (smallest - 1) // 2 * per_identity**2
    if impostor_room < per_fold:
        raise ValueError(
            f"num_pairs={num_pairs} needs {per_fold} distinct impostor pairs per fold but a fold "
            f"of {smallest} identities has only {impostor_room}; raise test_identities"
        )


def _round_robin(groups: list[list[tuple[int, int]]], count: int) -> list[tuple[int, int]]:
    """Take one item from each group in turn until ``count`` items are taken."""
    taken: list[tuple[int, int]] = []
    depth = 0
    while len(taken) < count:
        for group in groups:
            if depth < len(group):
                taken.append(group[depth])
                if len(taken) == count:
                    break
        depth += 1
    return taken


def make_pairs(
    num_identities: int, per_identity: int, num_pairs: int, rng: np.random.Generator
) -> PairLayout:
    """Draw distinct, balanced genuine and impostor pairs in 10 identity-disjoint folds."""
    check_pair_parameters(num_identities, per_identity, num_pairs)
    per_fold = num_pairs // (2 * NUM_FOLDS)
    folds = np.array_split(rng.permutation(num_identities), NUM_FOLDS)
    sample_pairs = list(combinations(range(per_identity), 2))
    cross = [(a, b) for a in range(per_identity) for b in range(per_identity)]
    left: list[int] = []
    right: list[int] = []
    issame: list[bool] = []
    fold_of: list[int] = []

    def image(identity: int, sample: int) -> int:
        return identity * per_identity + sample

    for fold, members in enumerate(folds):
        members = [int(m) for m in members]
        # Genuine: every identity gives pairs in turn, each a distinct pair of its samples.
        groups = []
        for identity in members:
            order = rng.permutation(len(sample_pairs))
            groups.append([(identity, int(k)) for k in order])
        for identity, k in _round_robin(groups, per_fold):
            a, b = sample_pairs[k]
            left.append(image(identity, a))
            right.append(image(identity, b))
        # Impostor: every identity pair of the fold in turn, each time new samples.
        couples = list(combinations(members, 2))
        couples = [couples[i] for i in rng.permutation(len(couples))]
        groups = [[(c, int(k)) for k in rng.permutation(len(cross))] for c in range(len(couples))]
        for c, k in _round_robin(groups, per_fold):
            (first, second), (a, b) = couples[c], cross[k]
            left.append(image(first, a))
            right.append(image(second, b))
        issame += [True] * per_fold + [False] * per_fold
        fold_of += [fold] * (2 * per_fold)
    return PairLayout(
        left=np.asarray(left, dtype=np.int64),
        right=np.asarray(right, dtype=np.int64),
        issame=np.asarray(issame, dtype=bool),
        fold=np.asarray(fold_of, dtype=np.int64),
    )
