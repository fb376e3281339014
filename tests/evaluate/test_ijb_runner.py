"""IJB end to end on a synthetic set in the real layout: the runner's aligned crops, template
features, pair scores, TAR@FAR and 1:N equal a naive computation done here by hand."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402
from ijb_fixture import write_ijb_fixture  # noqa: E402

from sphereface2.data.alignment import align_face  # noqa: E402
from sphereface2.data.decode import read_image  # noqa: E402
from sphereface2.data.transforms import to_tensor  # noqa: E402
from sphereface2.evaluate.ijb import (  # noqa: E402
    IJBFormatError,
    ijb_1n,
    ijb_1n_over_galleries,
    tar_at_far,
)
from sphereface2.evaluate.ijb_runner import (  # noqa: E402
    IJBDataset,
    evaluate_ijb,
    locate_ijb,
)
from sphereface2.evaluate.model_loading import EmbeddingModel, TorchEmbeddingModel  # noqa: E402


def _model(seed: int = 0) -> TorchEmbeddingModel:
    return TorchEmbeddingModel(tiny.build_tiny(seed), tiny.model_config(), name=f"tiny{seed}")


class CountingModel(EmbeddingModel):
    """Counts the images it embeds."""

    def __init__(self, inner: EmbeddingModel) -> None:
        self.inner = inner
        self.name, self.description = inner.name, inner.description
        self.input_size, self.embedding_dim = inner.input_size, inner.embedding_dim
        self.source = ""
        self.images = 0

    def _forward(self, images: torch.Tensor) -> np.ndarray:
        self.images += images.shape[0]
        return self.inner.embed(images)


@pytest.fixture(scope="module")
def ijbc(tmp_path_factory):
    return write_ijb_fixture(tmp_path_factory.mktemp("ijb"), "IJBC", seed=1)


@pytest.fixture
def fresh(tmp_path):
    """A fixture of its own, for tests that damage it."""
    return write_ijb_fixture(tmp_path, "IJBC", subjects=3, seed=2)


def _naive_image_features(fx, model, flip=True) -> np.ndarray:
    rows = []
    for i, name in enumerate(fx.image_names):
        crop = align_face(read_image(str(fx.image_dir / name)), fx.landmarks[i], (16, 16))
        x = to_tensor(crop)[None]
        e = model.embed(x)[0].astype(np.float64)
        if flip:
            e = e + model.embed(x.flip(-1))[0]
        rows.append(e)
    return np.array(rows)


def _naive_templates(fx, image_feats, use_faceness=True) -> dict[int, np.ndarray]:
    out = {}
    for t in sorted(set(fx.template_ids.tolist())):
        total = np.zeros(image_feats.shape[1])
        in_t = [i for i in range(len(fx.image_names)) if fx.template_ids[i] == t]
        for m in sorted({int(fx.media_ids[i]) for i in in_t}):
            members = [i for i in in_t if fx.media_ids[i] == m]
            media = np.zeros(image_feats.shape[1])
            for i in members:
                w = float(fx.faceness[i]) if use_faceness else 1.0
                media += w * image_feats[i]
            total += media / len(members)
        out[t] = total / np.linalg.norm(total)
    return out


def test_dataset_aligns_each_loose_crop_back_to_its_face(ijbc):
    data = IJBDataset(ijbc.root, "IJBC", input_size=(16, 16))
    assert len(data) == len(ijbc.image_names) and data.image_names == ijbc.image_names
    assert np.array_equal(data.template_ids, ijbc.template_ids)
    assert np.array_equal(data.media_ids, ijbc.media_ids)
    assert np.array_equal(data.faceness, ijbc.faceness)
    for i in range(len(data)):
        crop = data.crop(i).astype(np.float64)
        # The crop each loose image was made from, up to two bilinear resamplings.
        assert np.abs(crop[2:-2, 2:-2] - ijbc.crops[i][2:-2, 2:-2]).mean() < 1.5
        image, index = data[i]
        assert index == i
        assert torch.equal(image, to_tensor(data.crop(i)))
    # Another size: aligned at 32x32 and resized to the model's 16x16.
    big = IJBDataset(ijbc.set_dir, None, input_size=(16, 16), align_size=(32, 32))
    assert big.crop(0).shape == (32, 32, 3) and big[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize(("flip", "use_faceness"), [(True, True), (False, True), (True, False)])
def test_runner_equals_a_naive_computation(ijbc, flip, use_faceness):
    model = _model(0)
    result = evaluate_ijb(
        model, ijbc.root, "IJBC", batch_size=5, flip=flip, use_faceness=use_faceness, chunk_size=7
    )
    naive_images = _naive_image_features(ijbc, model, flip)
    np.testing.assert_allclose(result.image_features, naive_images, rtol=1e-5, atol=1e-5)
    naive = _naive_templates(ijbc, naive_images, use_faceness)
    assert result.template_ids.tolist() == sorted(naive)
    for row, t in enumerate(result.template_ids.tolist()):
        np.testing.assert_allclose(result.template_feats[row], naive[t], atol=1e-5)
    naive_scores = np.array([naive[a] @ naive[b] for a, b in zip(ijbc.pair_t1, ijbc.pair_t2)])
    np.testing.assert_allclose(result.scores, naive_scores, atol=1e-5)
    assert np.array_equal(result.labels, ijbc.pair_labels)
    assert result.verification.tar_at_far == tar_at_far(result.scores, ijbc.pair_labels)
    for got, want in zip(
        result.verification.tar_at_far, tar_at_far(naive_scores, ijbc.pair_labels)
    ):
        assert (got.fpr, got.method) == (want.fpr, want.method)
        assert got.tpr == pytest.approx(want.tpr)
    v = result.verification
    assert (v.num_genuine, v.num_impostor) == (6, 60)
    assert {r.method for r in v.tar_at_far} == {"nearest", "interpolated"}
    assert ("flip-sum" in v.protocol) == flip and ("faceness" in v.protocol) == use_faceness
    assert (result.num_images, result.num_templates, result.name) == (
        len(ijbc.image_names),
        12,
        "IJB-C",
    )


def test_one_to_n_both_conventions_equal_the_array_functions(ijbc):
    model = _model(3)
    sep = evaluate_ijb(model, ijbc.set_dir, None, batch_size=16, one_to_n="insightface")
    merged = evaluate_ijb(model, ijbc.set_dir, None, batch_size=16, one_to_n="opensphere")
    naive = _naive_templates(ijbc, _naive_image_features(ijbc, model))

    def feats(ids):
        return np.stack([naive[int(t)] for t in ids])

    probe_t, probe_s = ijbc.probes
    galleries = [(feats(t), s) for t, s in ijbc.galleries]
    want = ijb_1n_over_galleries(galleries, feats(probe_t), probe_s)
    got = sep.identification
    assert got.hits == want.hits and got.rates == want.rates
    assert [t.tpir for t in got.tpir] == pytest.approx([t.tpir for t in want.tpir])
    assert "G1 and G2 searched separately" in got.protocol and "InsightFace" in got.protocol
    assert got.num_mated == 6 and got.num_nonmated == 6  # 3 + 3 per gallery
    gallery_f = np.concatenate([g for g, _ in galleries])
    gallery_s = np.concatenate([s for _, s in galleries])
    want = ijb_1n(gallery_f, gallery_s, feats(probe_t), probe_s, tpir_convention="opensphere-pairs")
    got = merged.identification
    assert got.hits == want.hits
    assert [t.tpir for t in got.tpir] == pytest.approx([t.tpir for t in want.tpir])
    assert {t.convention for t in got.tpir} == {"opensphere-pairs"}
    assert "merged gallery" in got.protocol and "OpenSphere" in got.protocol
    assert merged.one_to_n == "opensphere" and sep.one_to_n == "insightface"


def test_ijbb_layout_and_where_the_set_is_found(tmp_path):
    fx = write_ijb_fixture(tmp_path / "b", "IJBB", subjects=2, seed=4)
    for where in (fx.root, fx.root / "IJB_release", fx.set_dir):
        layout = locate_ijb(where)
        assert (layout.name, layout.set_dir) == ("IJBB", fx.set_dir)
    assert locate_ijb(fx.root, "ijb-b").gallery_files[1].name == "ijbb_1N_gallery_S2.csv"
    result = evaluate_ijb(_model(), fx.root, "IJBB", one_to_n="insightface")
    assert result.name == "IJB-B" and "S1 and S2" in result.identification.protocol
    write_ijb_fixture(tmp_path / "b", "IJBC", subjects=2, seed=5)
    with pytest.raises(ValueError, match="holds both IJBB and IJBC"):
        locate_ijb(fx.root)
    with pytest.raises(FileNotFoundError, match="no IJB meta files; looked for"):
        locate_ijb(tmp_path, "IJBC")
    with pytest.raises(ValueError, match="unknown IJB set 'IJBA'"):
        locate_ijb(fx.root, "IJBA")


def test_feature_cache_is_reused_only_for_the_same_run(ijbc, tmp_path):
    cache = tmp_path / "cache" / "ijbc_feats"
    model = CountingModel(_model(0))
    first = evaluate_ijb(model, ijbc.root, "IJBC", cache=cache)
    assert not first.from_cache and model.images == 2 * len(ijbc.image_names)
    assert (tmp_path / "cache" / "ijbc_feats.npy").is_file()
    again = evaluate_ijb(model, ijbc.root, "IJBC", cache=cache, use_faceness=False)
    assert again.from_cache and model.images == 2 * len(ijbc.image_names)  # nothing embedded
    np.testing.assert_array_equal(again.image_features, first.image_features)
    same = evaluate_ijb(model, ijbc.root, "IJBC", cache=str(cache) + ".npy")
    assert same.verification == first.verification
    other = _model(1)
    other.description = "another model"
    with pytest.raises(ValueError, match=r"another run \(model: cached .* now 'another model'"):
        evaluate_ijb(other, ijbc.root, "IJBC", cache=cache)
    with pytest.raises(ValueError, match=r"another run \(flip"):
        evaluate_ijb(model, ijbc.root, "IJBC", cache=cache, flip=False)


def test_missing_image_names_the_image_and_its_meta_line(fresh):
    (fresh.image_dir / fresh.image_names[4]).unlink()
    with pytest.raises(FileNotFoundError) as err:
        evaluate_ijb(_model(), fresh.root, "IJBC")
    text = str(err.value)
    assert f"{fresh.image_dir / fresh.image_names[4]}: image not found" in text
    assert "ijbc_name_5pts_score.txt:5)" in text and "1 of " in text


def test_undecodable_image_names_the_image_and_its_meta_line(fresh):
    (fresh.image_dir / fresh.image_names[2]).write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"3.png \(listed at .*ijbc_name_5pts_score.txt:3\)"):
        evaluate_ijb(_model(), fresh.root, "IJBC")


@pytest.mark.parametrize(
    ("kind", "line", "replacement", "message"),
    [
        ("name_5pts_score.txt", 3, "3.png 1 2 3\n", "expected 12 fields"),
        ("face_tid_mid.txt", 2, "2.png x 7\n", "template_id must be an integer"),
        ("template_pair_label.txt", 4, "1 2 3 4\n", "expected 3 fields"),
        ("template_pair_label.txt", 2, "999 {t} 0\n", "first template 999 has no images"),
    ],
)
def test_malformed_meta_line_names_the_file_and_line(fresh, kind, line, replacement, message):
    path = fresh.meta_file(kind)
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = replacement.format(t=int(fresh.template_ids[0]))
    path.write_text("".join(lines))
    model = CountingModel(_model())
    with pytest.raises(IJBFormatError, match=f"ijbc_{kind}:{line}: {message}"):
        evaluate_ijb(model, fresh.root, "IJBC")
    assert model.images == 0  # failed before embedding anything


def test_one_to_n_needs_its_files(fresh):
    fresh.meta_file("1N_gallery_G2.csv").unlink()
    with pytest.raises(FileNotFoundError, match="IJB-C 1:N needs .*ijbc_1N_gallery_G2.csv"):
        evaluate_ijb(_model(), fresh.root, "IJBC", one_to_n="insightface")
    with pytest.raises(ValueError, match="unknown 1:N convention 'nist'"):
        evaluate_ijb(_model(), fresh.root, "IJBC", one_to_n="nist")
    shutil.rmtree(fresh.image_dir)
    with pytest.raises(FileNotFoundError, match="IJB image folder not found"):
        IJBDataset(fresh.root, "IJBC")
