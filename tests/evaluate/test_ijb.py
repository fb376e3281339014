"""IJB readers, template pooling, 1:1 scoring and 1:N identification against loop references."""

from __future__ import annotations

import math

import evaluate_loop_reference as ref
import numpy as np
import pytest
import torch

from sphereface2.evaluate.ijb import (
    IJBFormatError,
    _pair_dots_torch,
    exact_ceil,
    ijb_1n,
    ijb_1n_over_galleries,
    ijb_11,
    merge_galleries,
    read_1n_list,
    read_face_tid_mid,
    read_ijb_meta,
    read_name_5pts_score,
    read_template_pair_label,
    score_template_pairs,
    take_templates,
    tar_at_far,
    template_features,
)

# ----------------------------------------------------------------------------- readers


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_meta_files(tmp_path):
    _write(tmp_path / "ijbb_face_tid_mid.txt", "1.jpg 1 69544\n2.jpg 1 69544\n\n3.jpg 7 5\n")
    _write(
        tmp_path / "ijbb_name_5pts_score.txt",
        "1.jpg 46.060 62.026 87.785 60.323 68.851 77.656 52.162 99.875 86.450 98.648 0.999\n"
        "2.jpg 1 2 3 4 5 6 7 8 9 10 0.5\n"
        "3.jpg 1 2 3 4 5 6 7 8 9 10 0.25\n",
    )
    _write(tmp_path / "ijbb_template_pair_label.txt", "1 11065 1\n1 7 0\n")
    meta = read_ijb_meta(tmp_path, "IJBB")
    assert meta.image_names == ["1.jpg", "2.jpg", "3.jpg"]
    assert meta.template_ids.tolist() == [1, 1, 7] and meta.media_ids.tolist() == [69544, 69544, 5]
    assert meta.landmarks.shape == (3, 5, 2) and meta.landmarks.dtype == np.float32
    np.testing.assert_allclose(meta.landmarks[0, 1], [87.785, 60.323], rtol=1e-6)
    np.testing.assert_allclose(meta.landmarks[1, 4], [9, 10])
    np.testing.assert_allclose(meta.faceness, [0.999, 0.5, 0.25], rtol=1e-6)
    assert meta.pair_template_ids_1.tolist() == [1, 1]
    assert meta.pair_template_ids_2.tolist() == [11065, 7]
    assert meta.pair_labels.tolist() == [True, False]
    assert read_ijb_meta(tmp_path, "ijbb", pairs=False).pair_labels is None


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1 2 1\n3 4 0\n5 x 1\n", 3, "template_id_2 must be an integer"),
        ("1 2 1\n3 4\n", 2, "expected 3 fields"),
        ("1 2 1\n\n3 4 2\n", 3, "label must be 0 or 1"),
        ("1 2 1 9\n", 1, "expected 3 fields"),
        ("1 2 1.0\n", 1, "label must be an integer"),
    ],
)
def test_pair_file_errors_name_file_and_line(tmp_path, text, line, what):
    path = _write(tmp_path / "p.txt", text)
    with pytest.raises(IJBFormatError, match=f"p.txt:{line}: {what}"):
        read_template_pair_label(path)


def test_pair_file_empty_and_fast_path(tmp_path):
    with pytest.raises(IJBFormatError, match="no records"):
        read_template_pair_label(_write(tmp_path / "e.txt", "\n"))
    t1, t2, y = read_template_pair_label(_write(tmp_path / "ok.txt", "5 6 0\n7 8 1\n"))
    assert t1.dtype == np.int64 and t1.tolist() == [5, 7] and t2.tolist() == [6, 8]
    assert y.dtype == np.bool_ and y.tolist() == [False, True]


def test_other_meta_file_errors(tmp_path):
    with pytest.raises(IJBFormatError, match=r"t.txt:2: expected 3 fields 'image template_id"):
        read_face_tid_mid(_write(tmp_path / "t.txt", "a.jpg 1 2\nb.jpg 1\n"))
    with pytest.raises(IJBFormatError, match="t.txt:1: media_id must be an integer"):
        read_face_tid_mid(_write(tmp_path / "t.txt", "a.jpg 1 x\n"))
    with pytest.raises(IJBFormatError, match="s.txt:1: expected 12 fields"):
        read_name_5pts_score(_write(tmp_path / "s.txt", "a.jpg 1 2 3\n"))
    with pytest.raises(IJBFormatError, match="s.txt:2: landmarks and faceness must be numbers"):
        read_name_5pts_score(
            _write(tmp_path / "s.txt", "a.jpg" + " 1" * 11 + "\nb.jpg" + " 1" * 10 + " z\n")
        )
    with pytest.raises(IJBFormatError, match="s.txt:1: landmarks and faceness must be finite"):
        read_name_5pts_score(_write(tmp_path / "s.txt", "a.jpg" + " 1" * 10 + " nan\n"))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_face_tid_mid(tmp_path / "missing.txt")


def test_meta_files_must_list_the_same_images(tmp_path):
    _write(tmp_path / "ijbc_face_tid_mid.txt", "1.jpg 1 1\n2.jpg 1 1\n")
    _write(
        tmp_path / "ijbc_name_5pts_score.txt", "1.jpg" + " 1" * 11 + "\n3.jpg" + " 1" * 11 + "\n"
    )
    with pytest.raises(IJBFormatError, match="record 2: .*'2.jpg' but .*'3.jpg'"):
        read_ijb_meta(tmp_path, "ijbc", pairs=False)
    _write(tmp_path / "ijbc_name_5pts_score.txt", "1.jpg" + " 1" * 11 + "\n")
    with pytest.raises(IJBFormatError, match="lists 2 images but .* lists 1"):
        read_ijb_meta(tmp_path, "ijbc", pairs=False)


def test_read_1n_list(tmp_path):
    path = _write(
        tmp_path / "ijbc_1N_gallery_G1.csv",
        "TEMPLATE_ID,SUBJECT_ID,FILENAME\n3,100,a.jpg\n3,100,b.jpg\n1,200,c.jpg\n",
    )
    t, s = read_1n_list(path)
    assert t.tolist() == [3, 1] and s.tolist() == [100, 200]
    _write(path, "TEMPLATE_ID,SUBJECT_ID\n3,100\n4,7\n3,101\n")
    with pytest.raises(IJBFormatError, match="G1.csv:4: template 3 was listed under subject 100"):
        read_1n_list(path)
    _write(path, "TEMPLATE_ID,SUBJECT_ID\n3\n")
    with pytest.raises(IJBFormatError, match="G1.csv:2: expected 'TEMPLATE_ID,SUBJECT_ID"):
        read_1n_list(path)


# ----------------------------------------------------------------------------- templates


def _images(seed, n=60, d=6, templates=9):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
    faceness = rng.uniform(0.1, 1.0, size=n)
    tids = rng.integers(0, templates, size=n) * 10 + 5  # sparse, unsorted ids
    mids = rng.integers(0, 4, size=n)  # media ids shared across templates
    return feats, faceness, tids, mids


@pytest.mark.parametrize("use_faceness", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_template_features_match_dict_loops(seed, use_faceness):
    feats, faceness, tids, mids = _images(seed)
    got, ids = template_features(
        feats, faceness, tids, mids, use_faceness=use_faceness, chunk_size=7, dtype=np.float64
    )
    want = ref.template_features(
        feats.tolist(), faceness.tolist(), tids.tolist(), mids.tolist(), use_faceness
    )
    assert ids.tolist() == sorted(want)
    for row, t in zip(got, ids):
        np.testing.assert_allclose(row, want[t], atol=1e-12)
    got32, _ = template_features(feats, faceness, tids, mids, use_faceness=use_faceness)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, got, atol=1e-6)


def test_template_pooling_weights_media_not_images():
    # Template 1: three frames of one video (media 9) and one still (media 4): the video counts
    # once, so the pooled direction is the bisector of the two media directions.
    feats = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    got, ids = template_features(feats, None, [1, 1, 1, 1], [9, 9, 9, 4], use_faceness=False)
    np.testing.assert_allclose(got[0], [math.sqrt(0.5)] * 2, rtol=1e-6)
    # Faceness scales an image before the media average.
    got, _ = template_features(feats, [1.0, 1.0, 1.0, 3.0], [1, 1, 1, 1], [9, 9, 9, 4])
    np.testing.assert_allclose(got[0], np.array([1.0, 3.0]) / math.sqrt(10), rtol=1e-6)


def test_template_features_reject_bad_input():
    feats, faceness, tids, mids = _images(0, n=10)
    with pytest.raises(ValueError, match="faceness is required"):
        template_features(feats, None, tids, mids)
    with pytest.raises(ValueError, match=r"template_ids must have shape \(10,\)"):
        template_features(feats, faceness, tids[:9], mids)
    with pytest.raises(ValueError, match="media_ids must be integers"):
        template_features(feats, faceness, tids, mids.astype(float))
    bad = feats.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="features: row 4 is not finite"):
        template_features(bad, faceness, tids, mids, chunk_size=3)
    with pytest.raises(ValueError, match="faceness: index 2 is not finite"):
        template_features(feats, np.where(np.arange(10) == 2, np.inf, faceness), tids, mids)
    zero = np.zeros(10)
    with pytest.raises(ValueError, match=r"template \d+: pooled feature is zero"):
        template_features(feats, zero, tids, mids)


def test_score_template_pairs_match_loops_and_name_missing_templates():
    feats, faceness, tids, mids = _images(1)
    tf, ids = template_features(feats, faceness, tids, mids, dtype=np.float64)
    rng = np.random.default_rng(0)
    t1 = rng.choice(ids, size=50)
    t2 = rng.choice(ids, size=50)
    got = score_template_pairs(tf, ids, t1, t2, chunk_size=7)
    lookup = dict(zip(ids.tolist(), tf.tolist()))
    want = [ref.dot(lookup[a], lookup[b]) for a, b in zip(t1.tolist(), t2.tolist())]
    np.testing.assert_allclose(got, want, atol=1e-12)
    # Template order in the table does not matter.
    perm = rng.permutation(len(ids))
    np.testing.assert_allclose(score_template_pairs(tf[perm], ids[perm], t1, t2), got, atol=1e-12)
    t2_bad = t2.copy()
    t2_bad[31] = 999
    with pytest.raises(ValueError, match=r"pairs_t2\[31\] = template 999 has no template feature"):
        score_template_pairs(tf, ids, t1, t2_bad, chunk_size=8)
    with pytest.raises(ValueError, match="appears twice"):
        score_template_pairs(np.concatenate([tf, tf[:1]]), np.r_[ids, ids[:1]], t1, t2)
    np.testing.assert_array_equal(take_templates(tf, ids, t1[:5]), [lookup[t] for t in t1[:5]])


def test_ijb_11_end_to_end_and_tar_at_far_labels():
    feats, faceness, tids, mids = _images(2, n=200, templates=40)
    tf, ids = template_features(feats, faceness, tids, mids, dtype=np.float64)
    rng = np.random.default_rng(1)
    t1 = rng.choice(ids, size=400)
    t2 = rng.choice(ids, size=400)
    labels = rng.random(400) < 0.3
    result = ijb_11(tf, ids, t1, t2, labels, fars=(1e-2, 1e-1))
    scores = score_template_pairs(tf, ids, t1, t2)
    assert [r.method for r in result.tar_at_far] == ["nearest"] * 2 + ["interpolated"] * 2
    for r in result.tar_at_far:
        fn = ref.tpr_nearest if r.method == "nearest" else ref.tpr_interpolated
        assert r.tpr == pytest.approx(fn(scores.tolist(), labels.tolist(), r.fpr))
    assert result.auc == pytest.approx(ref.mann_whitney_auc(scores.tolist(), labels.tolist()))
    assert "TAR@FAR=1e-02 (nearest ROC point, InsightFace)" in str(result)
    assert tar_at_far(scores, labels, (1e-1,), "interpolated")[0] == result.tar_at_far[3]
    # About 280 impostor pairs resolve FAR 1e-2 but not 1e-3: printed as n/a, not a number.
    fine = ijb_11(tf, ids, t1, t2, labels, fars=(1e-3, 1e-2))
    impostors = int((~labels).sum())
    assert 100 <= impostors < 1000 and fine.num_impostor == impostors
    lines = str(fine).splitlines()
    assert (
        lines[1]
        == f"  TAR@FAR=1e-03 (nearest ROC point, InsightFace): n/a ({impostors} impostor pairs)"
    )
    assert lines[2].startswith("  TAR@FAR=1e-02 (nearest ROC point, InsightFace): ")
    assert lines[2].endswith("%")


# ----------------------------------------------------------------------------- 1:N


def _gallery_and_probes(seed, d=8):
    """Subjects 0..11 in the gallery (subject 3 twice); probes of subjects 0..19 (12..19 are
    non-mated), some exact copies of gallery entries of other subjects (ties)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, d))
    gallery_ids = np.r_[np.arange(12), 3]
    gallery = centers[gallery_ids] + 0.6 * rng.normal(size=(13, d))
    probe_ids = rng.integers(0, 20, size=70)
    probes = centers[probe_ids] + 0.9 * rng.normal(size=(70, d))
    probes[5] = gallery[7]  # probe 5 ties with gallery entry 7 (maybe another subject)
    gallery[9] = gallery[8]  # two subjects with one identical entry: a tie for their probes
    return gallery, gallery_ids, probes, probe_ids


@pytest.mark.parametrize("seed", range(4))
def test_ijb_1n_matches_the_loop_reference(seed):
    gallery, gids, probes, pids = _gallery_and_probes(seed)
    fpirs = (0.01, 0.1, 0.25, 1.0)
    got = ijb_1n(
        gallery,
        gids,
        probes,
        pids,
        ranks=(1, 2, 5),
        fpirs=fpirs,
        chunk_size=16,
        dtype=torch.float64,
    )
    rates, tpirs, n_mated, n_nonmated = ref.ijb_1n(
        gallery.tolist(), gids.tolist(), probes.tolist(), pids.tolist(), (1, 2, 5), fpirs
    )
    assert got.num_mated == n_mated and got.num_nonmated == n_nonmated
    assert got.rates == pytest.approx([rates[k] for k in (1, 2, 5)])
    for t in got.tpir:
        assert t.convention == "nonmated-max"
        assert t.tpir == pytest.approx(tpirs[t.fpir]), t
        assert t.fpir_achieved <= t.fpir
    assert "top-1" in str(got) and "TPIR@FPIR=0.01 (nonmated-max)" in str(got)


def test_ijb_1n_ties_count_against_the_probe_in_float32():
    # Exact unit vectors: probe 0 (subject 1) scores 1.0 against its own entry and against an
    # identical entry of subject 2 -> rank 2. Probe 1 is non-mated.
    g = np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    gids = np.array([1, 2, 3])
    p = np.array([[1.0, 0, 0, 0], [0, 0.5, 0.5, 0.5 * math.sqrt(2)], [0, 1.0, 0, 0]])
    pids = np.array([1, 9, 3])
    got = ijb_1n(g, gids, p, pids, ranks=(1, 2), fpirs=(0.5,))
    assert got.hits == (1, 2) and got.num_mated == 2 and got.num_nonmated == 1
    (t,) = got.tpir
    assert t.threshold == pytest.approx(0.5)  # the only non-mated maximum
    assert t.tpir == 0.5  # probe 2 (rank 1, score 1 > 0.5); probe 0 is not rank 1
    assert t.fpir_achieved == 0.0


def test_exact_ceil_avoids_floating_point_round_up():
    assert math.ceil(0.07 * 100) == 8  # the floating-point trap
    assert exact_ceil(0.07, 100) == 7
    assert exact_ceil(0.1, 30) == 3 and exact_ceil(0.1, 31) == 4
    assert exact_ceil(0.01, 19593) == 196 and exact_ceil(0.1, 1) == 1


def test_merged_gallery_has_no_nonmated_probes_but_opensphere_tpir_works():
    gallery, gids, probes, pids = _gallery_and_probes(0)
    mated = np.isin(pids, gids)
    got = ijb_1n(gallery, gids, probes[mated], pids[mated], fpirs=(0.1,), dtype=torch.float64)
    assert got.num_nonmated == 0 and math.isnan(got.tpir[0].tpir)
    fpirs = (0.01, 0.1, 0.3)
    got = ijb_1n(
        gallery,
        gids,
        probes,
        pids,
        fpirs=fpirs,
        tpir_convention="opensphere-pairs",
        chunk_size=9,
        dtype=torch.float64,
    )
    want = ref.opensphere_tpir(
        gallery.tolist(), gids.tolist(), probes.tolist(), pids.tolist(), fpirs
    )
    for t in got.tpir:
        assert t.convention == "opensphere-pairs"
        assert t.tpir == pytest.approx(want[t.fpir])


def test_ijb_1n_over_two_galleries_combines_like_insightface():
    gallery, gids, probes, pids = _gallery_and_probes(1)
    first = gids < 6
    galleries = [(gallery[first], gids[first]), (gallery[~first], gids[~first])]
    got = ijb_1n_over_galleries(
        galleries, probes, pids, ranks=(1, 5), fpirs=(0.1,), dtype=torch.float64
    )
    a, b = got.parts
    assert got.num_mated == a.num_mated + b.num_mated
    assert got.rates[0] == pytest.approx((a.hits[0] + b.hits[0]) / got.num_mated)
    assert got.tpir[0].tpir == pytest.approx((a.tpir[0].tpir + b.tpir[0].tpir) / 2)
    assert "mean over 2 galleries" in str(got)


def test_ijb_1n_rejects_bad_input():
    gallery, gids, probes, pids = _gallery_and_probes(0)
    with pytest.raises(ValueError, match="no mated probes"):
        ijb_1n(gallery, gids, probes[pids >= 12], pids[pids >= 12])
    with pytest.raises(ValueError, match="probe_feats must be"):
        ijb_1n(gallery, gids, probes[:, :4], pids)
    with pytest.raises(ValueError, match="ranks must be positive"):
        ijb_1n(gallery, gids, probes, pids, ranks=(0,))
    with pytest.raises(ValueError, match=r"FPIRs must be in \(0, 1\]"):
        ijb_1n(gallery, gids, probes, pids, fpirs=(0.0,))
    with pytest.raises(ValueError, match="unknown TPIR convention"):
        ijb_1n(gallery, gids, probes, pids, tpir_convention="nist")
    bad = probes.copy()
    bad[40] = 0.0
    with pytest.raises(ValueError, match="probe_feats: row 40 is a zero vector"):
        ijb_1n(gallery, gids, bad, pids, chunk_size=16)


def test_merge_galleries():
    f1 = np.eye(4)[:3]
    f2 = np.eye(4)[2:]
    feats, subjects, templates = merge_galleries(
        [(f1, [10, 11, 12], [100, 101, 102]), (f2, [12, 13], [102, 103])]
    )
    assert templates.tolist() == [100, 101, 102, 103] and subjects.tolist() == [10, 11, 12, 13]
    np.testing.assert_array_equal(feats, np.eye(4))
    with pytest.raises(ValueError, match="template 102 is listed under subjects 12 and 99"):
        merge_galleries([(f1, [10, 11, 12], [100, 101, 102]), (f2, [99, 13], [102, 103])])
    with pytest.raises(ValueError, match="template 102 appears twice with different features"):
        merge_galleries([(f1, [10, 11, 12], [100, 101, 102]), (f2[::-1], [12, 13], [102, 103])])


def test_score_template_pairs_with_huge_or_negative_ids():
    feats, faceness, tids, mids = _images(3)
    tf, ids = template_features(feats, faceness, tids, mids, dtype=np.float64)
    want = score_template_pairs(tf, ids, ids[[0, 1, 2]], ids[[2, 2, 0]])
    for shift in (10**12, -(10**6)):
        got = score_template_pairs(tf, ids + shift, ids[[0, 1, 2]] + shift, ids[[2, 2, 0]] + shift)
        np.testing.assert_array_equal(got, want)
        with pytest.raises(ValueError, match=r"pairs_t1\[1\] = template"):
            score_template_pairs(tf, ids + shift, ids[[0, 1]] + shift + [0, 1], ids[[2, 2]] + shift)


def test_torch_pair_scoring_branch_matches_numpy():
    # The branch used on GPUs, run here on the CPU.
    rng = np.random.default_rng(0)
    table = rng.normal(size=(30, 16)).astype(np.float32)
    r1, r2 = rng.integers(0, 30, size=100), rng.integers(0, 30, size=100)
    got = _pair_dots_torch(torch.from_numpy(table), r1, r2)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, np.einsum("ij,ij->i", table[r1], table[r2]), rtol=1e-5)
