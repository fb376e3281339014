"""MegaFace identification / verification against loop references, and the feature-file format."""

from __future__ import annotations

import struct

import evaluate_loop_reference as ref
import numpy as np
import pytest
import torch

from sphereface2.evaluate.identification import (
    megaface_evaluate,
    megaface_identification,
    megaface_verification,
    scan_distractors,
)
from sphereface2.evaluate.megaface_io import (
    MegaFaceFormatError,
    feature_file_name,
    feature_path,
    read_feature,
    read_features,
    write_feature,
)


def _probes_and_distractors(seed, d=8, num_distractors=60):
    rng = np.random.default_rng(seed)
    counts = [3, 2, 5, 1, 4, 2]  # identity 3 has a single image: no queries
    ids = np.repeat(np.arange(len(counts)) * 7 + 2, counts)
    centers = rng.normal(size=(len(counts), d))
    probes = np.repeat(centers, counts, axis=0) + 0.8 * rng.normal(size=(ids.shape[0], d))
    distractors = rng.normal(size=(num_distractors, d))
    perm = rng.permutation(ids.shape[0])  # identities interleaved in file order
    return probes[perm], ids[perm], distractors


@pytest.mark.parametrize("seed", range(4))
def test_identification_matches_the_loop_reference(seed):
    probes, ids, distractors = _probes_and_distractors(seed)
    ranks = (1, 2, 10, 100)
    got = megaface_identification(
        probes, ids, distractors, ranks=ranks, chunk_size=7, dtype=torch.float64
    )
    rates, queries = ref.megaface_identification(
        probes.tolist(), ids.tolist(), distractors.tolist(), ranks
    )
    assert got.num_queries == queries == 3 * 2 + 2 + 5 * 4 + 4 * 3 + 2
    assert got.rates == pytest.approx([rates[k] for k in ranks])
    assert got.rates[-1] == 1.0  # fewer than 100 distractors: always within rank 100
    assert got.num_distractors == 60 and "rank-1" in str(got)


def test_identification_ties_count_against_the_probe_in_float32():
    v = np.array([1.0, 0.0, 0.0, 0.0])
    w = np.array([0.0, 0.5, 0.5, np.sqrt(0.5)])
    probes = np.stack([v, v, w, w])
    ids = np.array([1, 1, 2, 2])
    distractors = np.stack([v, -w])  # scores exactly 1 with identity 1's images
    got = megaface_identification(probes, ids, distractors, ranks=(1, 2))
    # Identity 1: both queries tie the distractor at 1.0 -> miss at rank 1, hit at rank 2.
    assert got.hits == (2, 4) and got.num_queries == 4


@pytest.mark.parametrize("seed", range(3))
def test_verification_matches_the_loop_reference(seed):
    probes, ids, distractors = _probes_and_distractors(seed, num_distractors=100)
    fars = (1e-3, 1e-2, 0.05)
    scores, labels = ref.megaface_pairs(probes.tolist(), ids.tolist(), distractors.tolist())
    full = megaface_verification(
        probes,
        ids,
        distractors,
        fars=fars,
        chunk_size=16,
        dtype=torch.float64,
        impostor_margin=10**9,
    )
    # No margin: only ceil(FAR x impostors) scores kept at first; rescanned when needed.
    lean = megaface_verification(
        probes,
        ids,
        distractors,
        fars=fars,
        chunk_size=16,
        dtype=torch.float64,
        impostor_margin=0,
    )
    assert full.num_impostor == len(probes) * 100 == full.impostors_kept
    # ceil(0.05 x 1700) = 85 kept at first was not enough: rescanned keeping 4 x 85.
    assert lean.impostors_kept == 340 < full.num_impostor
    assert full.num_genuine == sum(labels)
    for a, b in zip(full.tar_at_far, lean.tar_at_far):
        assert a.tpr == pytest.approx(b.tpr) and a.method == b.method and a.fpr == b.fpr
        fn = ref.tpr_nearest if a.method == "nearest" else ref.tpr_interpolated
        assert a.tpr == pytest.approx(fn(scores, labels, a.fpr))
    assert "TAR@FAR=1e-03 (nearest ROC point, InsightFace)" in str(full)


def test_evaluate_gives_both_from_one_scan():
    probes, ids, distractors = _probes_and_distractors(0)
    ident, ver = megaface_evaluate(
        probes, ids, distractors, ranks=(1, 5), fars=(0.01,), dtype=torch.float64
    )
    alone = megaface_identification(probes, ids, distractors, ranks=(1, 5), dtype=torch.float64)
    assert ident == alone
    assert [r.method for r in ver.tar_at_far] == ["nearest", "interpolated"]


def test_scan_keeps_exact_top_scores():
    probes, _, distractors = _probes_and_distractors(1, num_distractors=45)
    scan = scan_distractors(
        probes, distractors, per_probe_k=4, global_k=30, chunk_size=8, dtype=torch.float64
    )
    p = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    d = distractors / np.linalg.norm(distractors, axis=1, keepdims=True)
    s = p @ d.T
    np.testing.assert_allclose(scan.per_probe_top, -np.sort(-s, axis=1)[:, :4], atol=1e-12)
    np.testing.assert_allclose(scan.impostor_top, -np.sort(-s.ravel())[:30], atol=1e-12)


def test_megaface_rejects_bad_input():
    probes, ids, distractors = _probes_and_distractors(0)
    with pytest.raises(ValueError, match="no probe identity has two or more images"):
        megaface_identification(probes[:3], np.arange(3), distractors)
    with pytest.raises(ValueError, match="distractor_feats must be"):
        megaface_identification(probes, ids, distractors[:, :4])
    with pytest.raises(ValueError, match="no distractors"):
        megaface_identification(probes, ids, distractors[:0])
    bad = distractors.copy()
    bad[13] = 0.0
    with pytest.raises(ValueError, match="distractor_feats: row 13 is a zero vector"):
        megaface_identification(probes, ids, bad, chunk_size=5)
    with pytest.raises(ValueError, match=r"probe_ids must have shape \(17,\)"):
        megaface_identification(probes, ids[:3], distractors)
    with pytest.raises(ValueError, match="ranks must be positive"):
        megaface_identification(probes, ids, distractors, ranks=(0,))
    with pytest.raises(ValueError, match="unknown TPR read method 'closest'"):
        megaface_verification(probes, ids, distractors, methods="closest")
    with pytest.raises(ValueError, match=r"FARs must be .* in \(0, 1\]"):
        megaface_verification(probes, ids, distractors, fars=(0.0,))


# ----------------------------------------------------------------------------- feature files


def test_feature_file_golden_bytes_and_round_trip(tmp_path):
    path = tmp_path / "a.jpg_sf2.bin"
    write_feature(path, np.array([1.0, 2.0]))
    assert path.read_bytes().hex() == ("020000000100000004000000050000000000803f00000040")
    f = read_feature(path)
    assert f.dtype == np.float32 and f.tolist() == [1.0, 2.0]
    # The devkit's writer is struct.pack("4i", rows, 1, 4, 5) + float32 data.
    other = tmp_path / "b.bin"
    other.write_bytes(struct.pack("<4i", 3, 1, 4, 5) + np.float32([0.5, -1, 3]).tobytes())
    np.testing.assert_array_equal(read_features([path, path]), [[1, 2], [1, 2]])
    assert read_feature(other).tolist() == [0.5, -1.0, 3.0]
    wide = tmp_path / "c.bin"  # a 1 x 3 CV_64F matrix
    wide.write_bytes(struct.pack("<4i", 1, 3, 24, 6) + np.float64([1, 2, 3]).tobytes())
    f = read_feature(wide)
    assert f.dtype == np.float64 and f.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00", "shorter than the 16-byte matrix header"),
        (struct.pack("<4i", 2, 1, 4, 7) + b"\x00" * 8, "type code 7 is not supported"),
        (struct.pack("<4i", 2, 1, 8, 5) + b"\x00" * 16, "row stride 8 bytes does not fit"),
        (struct.pack("<4i", 0, 1, 4, 5), r"gives a 0 x 1 matrix"),
        (struct.pack("<4i", 4, 1, 4, 5) + b"\x00" * 12, "has 28 bytes"),
    ],
)
def test_feature_file_errors_name_the_file(tmp_path, data, message):
    path = tmp_path / "bad_sf2.bin"
    path.write_bytes(data)
    with pytest.raises(MegaFaceFormatError, match=f"bad_sf2.bin: .*{message}"):
        read_feature(path)


def test_read_features_checks_sizes_and_write_checks_values(tmp_path):
    write_feature(tmp_path / "a.bin", np.ones(4))
    write_feature(tmp_path / "b.bin", np.ones(3))
    with pytest.raises(
        MegaFaceFormatError, match="b.bin: feature of size 3, but .*a.bin has size 4"
    ):
        read_features([tmp_path / "a.bin", tmp_path / "b.bin"])
    with pytest.raises(ValueError, match="non-finite"):
        write_feature(tmp_path / "c.bin", np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="1-D vector"):
        write_feature(tmp_path / "c.bin", np.ones((2, 2)))
    with pytest.raises(ValueError, match="no feature files"):
        read_features([])


def test_feature_paths_mirror_the_image_tree(tmp_path):
    assert feature_file_name("dir/12345.jpg", "sf2") == "12345.jpg_sf2.bin"
    assert feature_path("Adam_Brody/Adam_Brody_1.png", "sf2", tmp_path) == (
        tmp_path / "Adam_Brody" / "Adam_Brody_1.png_sf2.bin"
    )
    with pytest.raises(ValueError, match="relative and inside"):
        feature_path("../x.jpg", "sf2", tmp_path)
    with pytest.raises(ValueError, match="without slashes"):
        feature_file_name("x.jpg", "a/b")
