import json

import numpy as np
import pytest
import torch

from sphereface2.data.label_noise import (
    NoisyLabelDataset,
    inject_label_noise,
    load_corrupted_indices,
)


def test_fraction_selected_and_changed_match_p():
    n, k, p = 200_000, 10, 0.2
    clean = np.arange(n) % k
    noisy, corrupted = inject_label_noise(clean, p, k, seed=0)
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(len(corrupted) / n - p) < 4 * sigma
    changed = np.flatnonzero(noisy != clean)
    assert set(changed) <= set(corrupted)  # only selected samples may change
    # A selected sample keeps its label with probability 1/K.
    assert abs(len(changed) / n - p * (1 - 1 / k)) < 4 * sigma
    unselected = np.setdiff1d(np.arange(n), corrupted)
    np.testing.assert_array_equal(noisy[unselected], clean[unselected])


def test_new_labels_uniform_over_all_classes_own_class_included():
    n, k = 100_000, 10
    clean = np.full(n, 3)  # every sample in class 3: the draw must not avoid it
    noisy, corrupted = inject_label_noise(clean, 0.5, k, seed=7)
    counts = np.bincount(noisy[corrupted], minlength=k)
    expected = len(corrupted) / k
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.88  # chi-square 0.999 quantile with 9 degrees of freedom
    assert counts[3] > 0.8 * expected


def test_deterministic_per_seed_and_nested_in_p():
    clean = np.arange(5_000) % 50
    a = inject_label_noise(clean, 0.3, 50, seed=123)
    b = inject_label_noise(clean.copy(), 0.3, 50, seed=123)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    other = inject_label_noise(clean, 0.3, 50, seed=124)
    assert not np.array_equal(a[1], other[1])
    # Same seed, larger p: a superset of the corrupted samples, with the same new labels.
    low_noisy, low = inject_label_noise(clean, 0.2, 50, seed=5)
    high_noisy, high = inject_label_noise(clean, 0.6, 50, seed=5)
    assert set(low) <= set(high)
    np.testing.assert_array_equal(low_noisy[low], high_noisy[low])


def test_p_zero_and_one():
    clean = np.arange(1_000) % 7
    noisy, corrupted = inject_label_noise(clean, 0.0, 7, seed=0)
    np.testing.assert_array_equal(noisy, clean)
    assert corrupted.size == 0 and corrupted.dtype == np.int64
    noisy, corrupted = inject_label_noise(clean, 1.0, 7, seed=0)
    np.testing.assert_array_equal(corrupted, np.arange(1_000))
    assert 0.75 < np.mean(noisy != clean) < 0.96  # expected 6/7 = 0.857
    assert noisy.min() >= 0 and noisy.max() < 7
    # A single class: relabelling can only give the same label back.
    noisy, corrupted = inject_label_noise(np.zeros(10, int), 1.0, 1, seed=0)
    assert noisy.tolist() == [0] * 10 and corrupted.size == 10


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": -0.1}, r"p must be a number in \[0, 1\]"),
        ({"p": 1.5}, r"p must be a number in \[0, 1\]"),
        ({"p": float("nan")}, r"p must be a number in \[0, 1\]"),
        ({"p": "0.2"}, r"p must be a number"),
        ({"num_classes": 0}, "num_classes must be >= 1"),
        ({"num_classes": 2.5}, "num_classes must be an integer"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"labels": np.array([0, 1, 5])}, r"label 5 of sample 2 is outside \[0, 5\)"),
        ({"labels": np.array([0, -1])}, "label -1 of sample 1"),
        ({"labels": np.array([0.0, 1.0])}, "labels must be integers"),
        ({"labels": np.zeros((2, 2), int)}, "1-D"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"labels": np.array([0, 1, 2]), "p": 0.2, "num_classes": 5, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        inject_label_noise(**args)


class _Toy:
    """A reader-like dataset: images are their index, labels exposed without decoding."""

    def __init__(self, labels, num_classes):
        self.labels = np.asarray(labels)
        self.num_classes = num_classes
        self.reads = 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        return torch.tensor(float(i)), int(self.labels[i])


def test_noisy_dataset_yields_noisy_labels_in_any_order(tmp_path):
    base = _Toy(np.arange(400) % 20, 20)
    wrapped = NoisyLabelDataset(base, 0.5, None, seed=3)
    assert base.reads == 0  # noise drawn from the label array, no image read
    assert wrapped.num_classes == 20 and len(wrapped) == 400
    noisy, corrupted = inject_label_noise(base.labels, 0.5, 20, seed=3)
    np.testing.assert_array_equal(wrapped.labels, noisy)
    np.testing.assert_array_equal(wrapped.corrupted_indices, corrupted)
    np.testing.assert_array_equal(wrapped.clean_labels, base.labels)
    np.testing.assert_array_equal(wrapped.changed_indices, np.flatnonzero(noisy != base.labels))
    for i in np.random.default_rng(0).permutation(400)[:50]:
        image, label = wrapped[int(i)]
        assert float(image) == i and label == noisy[i] and isinstance(label, int)

    wrapped.save_corrupted(tmp_path / "noise.npy")
    wrapped.save_corrupted(tmp_path / "noise.json")
    np.testing.assert_array_equal(load_corrupted_indices(tmp_path / "noise.npy"), corrupted)
    np.testing.assert_array_equal(load_corrupted_indices(tmp_path / "noise.json"), corrupted)
    record = json.loads((tmp_path / "noise.json").read_text())
    assert record["p"] == 0.5 and record["seed"] == 3 and record["num_samples"] == 400
    assert record["noisy_labels"] == noisy[corrupted].tolist()
    assert record["clean_labels"] == base.labels[corrupted].tolist()
    with pytest.raises(ValueError, match=r"\.npy or \.json"):
        wrapped.save_corrupted(tmp_path / "noise.txt")


def test_noisy_dataset_label_sources_and_mismatch():
    class NoLabels:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return "img", 1

    with pytest.raises(ValueError, match="no 'labels' attribute"):
        NoisyLabelDataset(NoLabels(), 0.1, 3, seed=0)
    with pytest.raises(ValueError, match="no 'num_classes'"):
        NoisyLabelDataset(NoLabels(), 0.1, None, seed=0, labels=[1, 1, 1])
    with pytest.raises(ValueError, match="2 labels for a dataset of 3"):
        NoisyLabelDataset(NoLabels(), 0.1, 3, seed=0, labels=[1, 1])
    wrapped = NoisyLabelDataset(NoLabels(), 0.0, 3, seed=0, labels=[1, 2, 1])
    assert wrapped[0] == ("img", 1)
    with pytest.raises(ValueError, match=r"NoLabels\[1\] has label 1 but the label array says 2"):
        wrapped[1]
