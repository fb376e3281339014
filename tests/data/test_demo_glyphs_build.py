"""Building the demo dataset: files, determinism, read-back, split disjointness, rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sphereface2.data.decode import decode_image
from sphereface2.data.demo_glyphs import (
    NUM_FOLDS,
    CharsetOptions,
    build_demo_dataset,
    ensure_demo_dataset,
    select_identities,
)
from sphereface2.data.demo_glyphs.build import FILES

SMALL = {
    "train_identities": 12,
    "test_identities": 20,
    "samples_per_identity": 4,
    "test_samples_per_identity": 4,
    "num_pairs": 60,
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo") / "small"
    return build_demo_dataset(out, seed=3, workers=1, **SMALL)


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in FILES.values()}


def test_build_writes_every_file_and_counts(small):
    for path in (small.train_rec, small.train_idx, small.property_file, small.test_bin):
        assert path.is_file() and path.stat().st_size > 0
    assert small.num_classes == 12
    assert small.num_train_images == 48
    assert small.num_test_images == 80
    assert small.num_pairs == 60
    assert small.built
    meta = json.loads(small.meta_json.read_text(encoding="utf-8"))
    assert meta["params"]["seed"] == 3
    assert meta["params"]["image_size"] == 32
    assert meta["counts"]["genuine_pairs"] == 30
    assert len(meta["train"]["characters"]) == 12 and len(meta["test"]["characters"]) == 20
    assert meta["styles"][0] == "dejavusans"


def test_same_seed_gives_the_same_bytes_whatever_the_workers(small, tmp_path):
    again = build_demo_dataset(tmp_path / "again", seed=3, workers=2, **SMALL)
    assert _file_bytes(again.root) == _file_bytes(small.root)
    other = build_demo_dataset(tmp_path / "other", seed=4, workers=1, **SMALL)
    assert _file_bytes(other.root)["train.rec"] != _file_bytes(small.root)["train.rec"]


def test_train_and_test_identities_are_disjoint_deduplicated_charset_members(small):
    meta = json.loads(small.meta_json.read_text(encoding="utf-8"))
    train, test = set(meta["train"]["characters"]), set(meta["test"]["characters"])
    assert len(train) == 12 and len(test) == 20
    assert not train & test
    charset = {i.char for i in select_identities(CharsetOptions())}
    assert train | test <= charset


def test_recordio_reads_back_with_labels_and_size(small):
    pytest.importorskip("sphereface2.data.recordio_dataset", reason="RecordIO reader not present")
    from sphereface2.data.recordio_dataset import RecordIODataset

    dataset = RecordIODataset(small.root)
    assert len(dataset) == 48
    assert dataset.num_classes == 12
    labels = np.asarray(dataset.labels)
    np.testing.assert_array_equal(np.bincount(labels), np.full(12, 4))
    image, label = dataset[5]
    assert tuple(image.shape) == (3, 32, 32)
    assert label == labels[5]
    assert small.property_file.read_text().strip() == "12,32,32"


def test_bin_reads_back_in_fold_layout(small):
    pytest.importorskip("sphereface2.data.bin_format", reason=".bin reader not present")
    from sphereface2.data.bin_format import read_bin

    pairs = read_bin(small.test_bin)
    assert len(pairs) == 60 and len(pairs.images) == 120
    assert decode_image(pairs.images[0]).shape == (32, 32, 3)
    per_fold = 60 // NUM_FOLDS
    expected = np.tile(np.repeat([True, False], per_fold // 2), NUM_FOLDS)
    np.testing.assert_array_equal(pairs.issame, expected)


def test_pair_list_matches_the_bin_and_folds_are_identity_disjoint(small):
    from sphereface2.data.bin_format import read_bin

    pairs = read_bin(small.test_bin)
    rows = [
        line.split()
        for line in small.test_pairs.read_text(encoding="utf-8").splitlines()
        if not line.startswith("#")
    ]
    assert len(rows) == 60
    folds: dict[int, set[str]] = {}
    seen_images: dict[tuple[str, str], bytes] = {}
    for i, (fold, same, left, left_k, right, right_k) in enumerate(rows):
        assert int(fold) == i // (60 // NUM_FOLDS)
        assert bool(int(same)) == bool(pairs.issame[i])
        assert (left == right) == bool(int(same))
        folds.setdefault(int(fold), set()).update((left, right))
        # The same test sample is the same bytes wherever it appears.
        for key, data in (
            ((left, left_k), pairs.images[2 * i]),
            ((right, right_k), pairs.images[2 * i + 1]),
        ):
            assert seen_images.setdefault(key, data) == data
    assert sorted(folds) == list(range(NUM_FOLDS))
    members = list(folds.values())
    assert all(not members[a] & members[b] for a in range(10) for b in range(a + 1, 10))


def test_ensure_rebuilds_only_when_needed(small, tmp_path):
    root = tmp_path / "ensure"
    first = ensure_demo_dataset(root, seed=3, workers=1, **SMALL)
    assert first.built
    stamp = first.train_rec.stat().st_mtime_ns
    second = ensure_demo_dataset(root, seed=3, workers=2, **SMALL)  # workers do not matter
    assert not second.built and second.train_rec.stat().st_mtime_ns == stamp
    assert second.num_classes == first.num_classes
    # A missing file or a different parameter triggers a rebuild.
    first.test_bin.unlink()
    assert ensure_demo_dataset(root, seed=3, workers=1, **SMALL).built
    changed = dict(SMALL, samples_per_identity=5)
    lines: list[str] = []
    rebuilt = ensure_demo_dataset(root, seed=3, workers=1, log=lines.append, **changed)
    assert rebuilt.built and rebuilt.num_train_images == 60
    assert "parameters differ" in lines[0] and "written" in lines[-1]
    # An unreadable meta.json is an unfinished build.
    rebuilt.meta_json.write_text("{", encoding="utf-8")
    assert ensure_demo_dataset(root, seed=3, workers=1, **changed).built


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"train_identities": 100_000}, "train_identities"),
        ({"test_identities": 10}, "test_identities"),
        ({"image_size": 40}, "image_size"),
        ({"samples_per_identity": 0}, "samples_per_identity"),
        ({"num_pairs": 61}, "num_pairs"),
    ],
)
def test_impossible_parameters_name_the_parameter(tmp_path, change, name):
    with pytest.raises(ValueError, match=name):
        build_demo_dataset(tmp_path / "bad", seed=0, workers=1, **dict(SMALL, **change))


def test_unknown_parameter_is_named(tmp_path):
    with pytest.raises(TypeError, match="sample_per_identity"):
        build_demo_dataset(tmp_path / "bad", sample_per_identity=3)


def test_nuisance_and_charset_options_accept_plain_mappings(small, tmp_path):
    from sphereface2.data.demo_glyphs import DemoParams, Nuisance

    as_object = DemoParams(nuisance=Nuisance(rotation_deg=5.0, scale=(0.7, 0.9)))
    as_mapping = DemoParams(nuisance={"rotation_deg": 5.0, "scale": [0.7, 0.9]})
    assert as_mapping == as_object
    assert DemoParams(charset={"min_styles": 5}).charset == CharsetOptions(min_styles=5)
    # The folder built with default objects is reused when the same values come as mappings.
    same = ensure_demo_dataset(
        small.root, seed=3, workers=1, nuisance=Nuisance().to_dict(), **SMALL
    )
    assert not same.built
    with pytest.raises(TypeError, match="rotation"):
        DemoParams(nuisance={"rotation": 5.0})
