"""MegaFace end to end on tiny folders: rank-1 and TAR@FAR equal naive loops over embeddings
made here by hand; devkit feature files round-trip; inputs and errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2.data.decode import read_image  # noqa: E402
from sphereface2.data.image_folder import ImageFolderDataset  # noqa: E402
from sphereface2.data.transforms import to_tensor  # noqa: E402
from sphereface2.evaluate.ijb import tar_at_far  # noqa: E402
from sphereface2.evaluate.megaface_io import MegaFaceFormatError, read_feature  # noqa: E402
from sphereface2.evaluate.megaface_runner import (  # noqa: E402
    evaluate_megaface,
    find_feature_files,
    resolve_distractor_counts,
    write_megaface_features,
)
from sphereface2.evaluate.model_loading import EmbeddingModel, TorchEmbeddingModel  # noqa: E402

PROBE_IDS = 4
PER_ID = 3
DISTRACTORS = 30


def _model(seed: int = 0) -> TorchEmbeddingModel:
    return TorchEmbeddingModel(tiny.build_tiny(seed), tiny.model_config(), name="tiny")


class CountingModel(EmbeddingModel):
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
def sets(tmp_path_factory):
    """FaceScrub-like probes (root/<identity>/<j>.png) and nested distractor folders whose
    faces are of other identities (some close to the probes' to make the ranks matter)."""
    root = tmp_path_factory.mktemp("megaface")
    tiny.write_image_folder(root / "facescrub", identities=PROBE_IDS, per_identity=PER_ID)
    rng = np.random.default_rng(7)
    for k in range(DISTRACTORS):
        folder = root / "megaface" / f"{k % 4}" / f"user{k % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(tiny.face(rng, k % 7)).save(folder / f"{k:03d}_0.png")
    return root


def _embed_by_hand(model, paths) -> np.ndarray:
    rows = []
    for p in paths:
        x = to_tensor(read_image(str(p)))[None]
        e = (model.embed(x) + model.embed(x.flip(-1)))[0].astype(np.float64)
        rows.append(e / np.linalg.norm(e))
    return np.array(rows)


def _probe_paths(root):
    paths = sorted((root / "facescrub").glob("*/*.png"))
    return paths, np.array([int(p.parent.name[2:]) for p in paths])


def _distractor_paths(root):
    return sorted((root / "megaface").rglob("*.png"))


def _naive_rank1(probes, labels, distractors) -> tuple[int, int]:
    hits = queries = 0
    for g in range(len(probes)):
        for q in range(len(probes)):
            if q == g or labels[q] != labels[g]:
                continue
            queries += 1
            s = probes[q] @ probes[g]
            beaten_by = sum(1 for d in distractors if probes[q] @ d >= s)
            hits += beaten_by == 0
    return hits, queries


def test_rank1_and_tar_equal_naive_loops(sets):
    model = _model(0)
    run = evaluate_megaface(
        model, sets / "facescrub", sets / "megaface", distractor_counts=(30, 5), batch_size=4
    )
    assert [s.num_distractors for s in run.sizes] == [5, 30]
    probe_paths, labels = _probe_paths(sets)
    probes = _embed_by_hand(model, probe_paths)
    distractors = _embed_by_hand(model, _distractor_paths(sets))
    for size in run.sizes:
        n = size.num_distractors
        hits, queries = _naive_rank1(probes, labels, distractors[:n])
        assert (size.identification.hits[0], size.identification.num_queries) == (hits, queries)
        assert queries == PROBE_IDS * PER_ID * (PER_ID - 1)
        genuine = [
            probes[i] @ probes[j]
            for i in range(len(probes))
            for j in range(i + 1, len(probes))
            if labels[i] == labels[j]
        ]
        impostor = [p @ d for p in probes for d in distractors[:n]]
        want = tar_at_far(
            genuine + impostor, [True] * len(genuine) + [False] * len(impostor), fars=(1e-6, 0.1)
        )
        got = evaluate_megaface(
            model, sets / "facescrub", sets / "megaface", (n,), fars=(1e-6, 0.1)
        ).sizes[0]
        assert [(r.fpr, r.method) for r in got.verification.tar_at_far] == [
            (r.fpr, r.method) for r in want
        ]
        assert [r.tpr for r in got.verification.tar_at_far] == pytest.approx([r.tpr for r in want])
    assert 0 < run.sizes[0].identification.rates[0] <= 1
    assert run.sizes[1].identification.hits[0] <= run.sizes[0].identification.hits[0]
    assert (run.num_probes, run.num_identities) == (PROBE_IDS * PER_ID, PROBE_IDS)
    assert run.probes_from == run.distractors_from == "images"
    assert "5 distractors: rank-1" in str(run)


def test_default_counts_and_only_the_largest_count_is_embedded(sets):
    model = CountingModel(_model(1))
    run = evaluate_megaface(model, sets / "facescrub", sets / "megaface")
    assert [s.num_distractors for s in run.sizes] == [10, DISTRACTORS]
    assert model.images == 2 * (PROBE_IDS * PER_ID + DISTRACTORS)
    model.images = 0
    evaluate_megaface(model, sets / "facescrub", sets / "megaface", distractor_counts=[7])
    assert model.images == 2 * (PROBE_IDS * PER_ID + 7)


def test_resolve_distractor_counts():
    assert resolve_distractor_counts(None, 1000, "d") == [10, 100, 1000]
    assert resolve_distractor_counts(None, 5, "d") == [5]
    assert resolve_distractor_counts([100, 10, 10], 150, "d") == [10, 100]
    with pytest.raises(ValueError, match=r"distractor count 200 is not in 1..150 \(d holds 150\)"):
        resolve_distractor_counts([10, 200], 150, "d")
    with pytest.raises(ValueError, match="distractor count 0"):
        resolve_distractor_counts([0], 150, "d")


def test_list_files_use_their_order(sets, tmp_path):
    probe_paths, labels = _probe_paths(sets)
    probe_list = tmp_path / "probes.txt"
    probe_list.write_text("".join(f"{p} {k}\n" for p, k in zip(probe_paths, labels)))
    order = _distractor_paths(sets)[::-1]
    distractor_list = tmp_path / "distractors.txt"
    distractor_list.write_text("# newest first\n" + "".join(f"{p}\n" for p in order))
    model = _model(2)
    run = evaluate_megaface(model, probe_list, distractor_list, distractor_counts=(6,))
    probes = _embed_by_hand(model, probe_paths)
    hits, _ = _naive_rank1(probes, labels, _embed_by_hand(model, order[:6]))
    assert run.sizes[0].identification.hits[0] == hits
    distractor_list.write_text(f"{order[0]}\nnotes.txt\n")
    with pytest.raises(ValueError, match=r"distractors.txt:2: 'notes.txt' is not an image path"):
        evaluate_megaface(model, probe_list, distractor_list)


def test_feature_files_round_trip(sets, tmp_path):
    model = _model(0)
    probe_dataset = ImageFolderDataset(sets / "facescrub")
    written = write_megaface_features(
        model, probe_dataset, tmp_path / "facescrub_features", "sf2", batch_size=5
    )
    probe_paths, _ = _probe_paths(sets)
    assert [p.relative_to(tmp_path / "facescrub_features") for p in written] == [
        Path(p.parent.name) / f"{p.name}_sf2.bin" for p in probe_paths
    ]
    want = _embed_by_hand(model, probe_paths)
    got = np.stack([read_feature(p) for p in written])
    np.testing.assert_allclose(got, want, atol=1e-6)
    distractor_files = write_megaface_features(
        model, sets / "megaface", tmp_path / "megaface_features", "sf2"
    )
    assert distractor_files[0] == tmp_path / "megaface_features/0/user0/000_0.png_sf2.bin"
    from_images = evaluate_megaface(model, sets / "facescrub", sets / "megaface", (10, 30))
    from_files = evaluate_megaface(
        None, tmp_path / "facescrub_features", tmp_path / "megaface_features", (10, 30)
    )
    assert from_files.probes_from == from_files.distractors_from == "features"
    for a, b in zip(from_images.sizes, from_files.sizes):
        assert a.identification.hits == b.identification.hits
        assert [r.tpr for r in a.verification.tar_at_far] == pytest.approx(
            [r.tpr for r in b.verification.tar_at_far]
        )
    # A second algorithm's files beside the first: the suffix must be chosen.
    write_megaface_features(model, sets / "megaface", tmp_path / "megaface_features", "other")
    with pytest.raises(ValueError, match=r"several suffixes \(other, sf2\)"):
        evaluate_megaface(None, tmp_path / "facescrub_features", tmp_path / "megaface_features")
    paths, suffix = find_feature_files(tmp_path / "megaface_features", "other")
    assert suffix == "other" and len(paths) == DISTRACTORS
    run = evaluate_megaface(
        None,
        tmp_path / "facescrub_features",
        tmp_path / "megaface_features",
        (10,),
        feature_suffix="sf2",
    )
    assert run.sizes[0].identification.hits == from_images.sizes[0].identification.hits
    broken = distractor_files[3]
    broken.write_bytes(broken.read_bytes()[:-4])
    with pytest.raises(MegaFaceFormatError, match=f"{broken}: header gives 16 x 1"):
        evaluate_megaface(
            None,
            tmp_path / "facescrub_features",
            tmp_path / "megaface_features",
            feature_suffix="sf2",
        )


def test_errors_name_what_is_wrong(sets, tmp_path):
    with pytest.raises(ValueError, match="holds images; a model is needed"):
        evaluate_megaface(None, sets / "facescrub", sets / "megaface")
    with pytest.raises(FileNotFoundError, match="MegaFace distractors not found"):
        evaluate_megaface(_model(), sets / "facescrub", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="MegaFace probes not found"):
        evaluate_megaface(_model(), tmp_path / "nope", sets / "megaface")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no images and no MegaFace feature files"):
        evaluate_megaface(_model(), sets / "facescrub", tmp_path / "empty")
    with pytest.raises(ValueError, match="outside the image root"):
        write_megaface_features(
            _model(), ImageFolderDataset(sets / "facescrub"), tmp_path / "f", "x", root=tmp_path
        )
    wide = TorchEmbeddingModel(
        tiny.build_tiny(0, tiny.model_config(embedding_dim=8)),
        tiny.model_config(embedding_dim=8),
    )
    write_megaface_features(wide, sets / "megaface", tmp_path / "wide", "w")
    with pytest.raises(ValueError, match="probe features are 16-d .* distractor features are 8-d"):
        evaluate_megaface(_model(), sets / "facescrub", tmp_path / "wide")
