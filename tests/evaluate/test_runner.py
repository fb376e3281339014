"""embed_dataset and evaluate_verification_sets: flip fusion, one embedding per image, and
results equal to the metric functions called by hand."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2.data.bin_format import BinPairDataset  # noqa: E402
from sphereface2.data.transforms import eval_transform  # noqa: E402
from sphereface2.evaluate.model_loading import EmbeddingModel, TorchEmbeddingModel  # noqa: E402
from sphereface2.evaluate.runner import (  # noqa: E402
    embed_dataset,
    evaluate_verification_sets,
    resolve_combined,
)
from sphereface2.evaluate.verification import (  # noqa: E402
    combined_verification,
    cosine_scores,
    evaluate_pairs,
)
from sphereface2.evaluate.verification_sets import (  # noqa: E402
    PAPER_SETS,
    open_bin_set,
    open_pair_list_set,
)


def _model(seed: int = 0) -> TorchEmbeddingModel:
    return TorchEmbeddingModel(tiny.build_tiny(seed), tiny.model_config(), name="tiny")


class CountingModel(EmbeddingModel):
    """Wraps a model and counts the images it is asked to embed."""

    def __init__(self, inner: EmbeddingModel) -> None:
        self.inner = inner
        self.name, self.description = "counting", "counting wrapper"
        self.input_size, self.embedding_dim = inner.input_size, inner.embedding_dim
        self.source = ""
        self.calls = 0
        self.images = 0

    def _forward(self, images: torch.Tensor) -> np.ndarray:
        self.calls += 1
        self.images += images.shape[0]
        return self.inner.embed(images)


def _all_images(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def test_flip_fusion_is_the_sum_of_raw_embeddings(tmp_path):
    tiny.write_tiny_bin(tmp_path / "v.bin", pairs=5)
    dataset = BinPairDataset(tmp_path / "v.bin", eval_transform((tiny.SIZE, tiny.SIZE)))
    model = _model()
    images = _all_images(dataset)
    with torch.no_grad():
        plain = model.module(images).numpy()
        mirrored = model.module(images.flip(3)).numpy()
    assert not np.allclose(plain, mirrored)  # the images are asymmetric: flipping matters
    fused = embed_dataset(model, dataset, batch_size=4, flip=True)
    assert fused.dtype == np.float32 and fused.shape == (10, tiny.DIM)
    np.testing.assert_allclose(fused, plain + mirrored, rtol=1e-5, atol=1e-6)
    # Unnormalised: the sum's norm is not 1.
    assert not np.allclose(np.linalg.norm(fused, axis=1), 1.0)
    alone = embed_dataset(model, dataset, batch_size=3, flip=False)
    np.testing.assert_allclose(alone, plain, rtol=1e-5, atol=1e-6)


def test_progress_reports_every_batch():
    data = [(torch.zeros(3, tiny.SIZE, tiny.SIZE), 0)] * 5
    seen = []
    embed_dataset(_model(), data, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        embed_dataset(_model(), data, batch_size=0)


def test_each_image_is_embedded_once(tmp_path):
    rows = tiny.write_image_folder(tmp_path / "imgs", identities=3, per_identity=2)
    paths = [p for p, _ in rows]
    # 8 pairs over 6 images; image 0 appears in 4 pairs.
    pairs = [
        (1, paths[0], paths[1]),
        (0, paths[0], paths[2]),
        (0, paths[0], paths[4]),
        (1, paths[2], paths[3]),
        (1, paths[4], paths[5]),
        (0, paths[1], paths[3]),
        (0, paths[0], paths[5]),
        (1, paths[3], paths[2]),
    ]
    listing = tiny.write_pair_list(tmp_path / "imgs" / "pairs.txt", pairs)
    pair_set = open_pair_list_set(listing, input_size=(tiny.SIZE, tiny.SIZE))
    assert pair_set.num_images == 6 and pair_set.num_pairs == 8
    counting = CountingModel(_model())
    run = evaluate_verification_sets(counting, [pair_set], batch_size=4, folds=2)
    assert counting.images == 2 * 6  # each image and its mirror, once
    # The per-pair embeddings are the shared image embeddings looked up by index.
    emb = run.embeddings["pairs"]
    np.testing.assert_allclose(
        run.sets[0].scores, cosine_scores(emb[pair_set.idx0], emb[pair_set.idx1])
    )


def _assert_same_result(got, want) -> None:
    assert got.kfold.accuracy == want.kfold.accuracy
    assert got.kfold.std == want.kfold.std
    np.testing.assert_array_equal(got.kfold.fold_thresholds, want.kfold.fold_thresholds)
    assert got.kfold.val == pytest.approx(want.kfold.val, nan_ok=True)
    bt, wbt = got.best_threshold, want.best_threshold
    assert (bt.accuracy, bt.threshold, bt.eer, bt.auc) == (
        wbt.accuracy,
        wbt.threshold,
        wbt.eer,
        wbt.auc,
    )
    assert [(r.method, r.fpr, r.tpr) for r in bt.tpr_at_fpr] == [
        (r.method, r.fpr, r.tpr) for r in wbt.tpr_at_fpr
    ]


def test_results_equal_the_metric_functions_by_hand(tmp_path):
    tiny.write_tiny_bin(tmp_path / "lfw.bin", pairs=20, seed=1)
    tiny.write_tiny_bin(tmp_path / "calfw.bin", pairs=30, seed=2)
    model = _model(seed=3)
    sets = [
        open_bin_set(tmp_path / "lfw.bin", input_size=model.input_size),
        open_bin_set(tmp_path / "calfw.bin", input_size=model.input_size),
    ]
    assert [s.name for s in sets] == ["LFW", "CALFW"]
    run = evaluate_verification_sets(model, sets, batch_size=64, flip=True)

    by_hand = []
    for s in sets:
        images = _all_images(s.dataset)
        with torch.no_grad():
            emb = (model.module(images) + model.module(images.flip(3))).numpy()
        by_hand.append((s.name, emb[0::2], emb[1::2], s.issame))
    expected = combined_verification(by_hand)
    for got, want in zip(run.sets, expected.per_set):
        assert got.name == want.name
        _assert_same_result(got.result, want)
    assert run.combined is not None and run.combined.members == ("LFW", "CALFW")
    _assert_same_result(run.combined.result, expected.combined)
    assert run.combined.num_pairs == 50 and run.combined.num_images == 100
    np.testing.assert_allclose(
        run.combined.scores,
        np.concatenate([cosine_scores(e0, e1) for _, e0, e1, _ in by_hand]),
    )
    single = evaluate_pairs(*by_hand[0][1:], name="LFW")
    _assert_same_result(run.sets[0].result, single)
    assert run.num_images == 100 and run.embed_seconds > 0


def test_combined_defaults_to_the_paper_sets(tmp_path):
    assert resolve_combined(["CFP-FP", *PAPER_SETS], None) == PAPER_SETS
    assert resolve_combined(["LFW", "CFP-FP"], None) == ("LFW", "CFP-FP")
    assert resolve_combined(["LFW"], None) == ()
    assert resolve_combined(["LFW", "CFP-FP", "CALFW"], ["CALFW", "LFW"]) == ("LFW", "CALFW")
    assert resolve_combined(["LFW", "CFP-FP"], []) == ()
    with pytest.raises(ValueError, match="cannot combine unknown set"):
        resolve_combined(["LFW"], ["CPLFW"])


def test_one_set_has_no_combined_and_repeated_names_fail(tmp_path):
    tiny.write_tiny_bin(tmp_path / "lfw.bin", pairs=10)
    shutil.copy(tmp_path / "lfw.bin", tmp_path / "other.bin")
    model = _model()
    one = evaluate_verification_sets(model, [open_bin_set(tmp_path / "lfw.bin")], folds=2)
    assert one.combined is None and [s.name for s in one.all_sets()] == ["LFW"]
    twice = [open_bin_set(tmp_path / "lfw.bin"), open_bin_set(tmp_path / "other.bin", "LFW")]
    with pytest.raises(ValueError, match="LFW is repeated; name them"):
        evaluate_verification_sets(model, twice)


def test_wrong_image_size_is_a_clear_error(tmp_path):
    tiny.write_tiny_bin(tmp_path / "lfw.bin", pairs=4)
    pair_set = open_bin_set(tmp_path / "lfw.bin", input_size=(32, 32))
    with pytest.raises(ValueError, match="expects 16x16 images, got 32x32"):
        evaluate_verification_sets(_model(), [pair_set], folds=2)
