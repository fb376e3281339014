"""search_gallery: the model's queries against a saved gallery, checked by a loop reference."""

from __future__ import annotations

import json

import pytest
from search_loop_reference import reference_top_k
from tiny_inference import face, face_folder, run_folder

from sphereface2.inference import faiss_index, load_model
from sphereface2.inference.gallery import FAISS_FILE, build_gallery, load_gallery, save_gallery
from sphereface2.inference.gallery_search import (
    add_faiss_index,
    check_model,
    open_faiss_index,
    results_to_dict,
    search_gallery,
    write_results,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    run, _ = run_folder(root / "run")
    face_folder(root / "faces", identities=5, per_identity=3)
    model = load_model(run, device="cpu")
    save_gallery(build_gallery(model, root / "faces"), root / "g")
    return root, model, load_gallery(root / "g")


@pytest.mark.parametrize("per", ["identity", "image"])
def test_results_match_the_loop_reference(setup, per):
    root, model, gallery = setup
    queries = [face(k % 5, seed=50 + k) for k in range(4)]
    results = search_gallery(gallery, model, queries, top_k=3, per=per)
    expected = reference_top_k(
        gallery.embeddings, gallery.labels, model.embed(queries), 3, per == "identity"
    )
    assert [r.query for r in results] == [f"<array {q}>" for q in range(4)]
    for result, ref in zip(results, expected):
        assert [m.row for m in result.matches] == [row for _, _, row in ref]
        for m, (score, _, row) in zip(result.matches, ref):
            assert m.score == pytest.approx(score, abs=1e-5)
            assert m.path == gallery.paths[row]
            assert m.identity == gallery.identities[gallery.labels[row]]
        if per == "identity":
            names = [m.identity for m in result.matches]
            assert len(set(names)) == len(names)


def test_a_gallery_image_finds_itself(setup):
    root, model, gallery = setup
    (result,) = search_gallery(gallery, model, gallery.paths[7], top_k=10)
    best = result.matches[0]
    assert (best.path, best.identity, best.row) == (gallery.paths[7], "id2", 7)
    assert best.score == pytest.approx(1.0, abs=1e-5)
    assert len(result.matches) == 5  # K > identities: every identity once
    assert result.query == gallery.paths[7]


def test_another_model_is_refused(setup):
    root, _, gallery = setup
    other = load_model(root / "run" / "checkpoints" / "ckpt_00000001.pt", device="cpu")
    with pytest.raises(ValueError, match="was built with another model") as info:
        check_model(gallery, other)
    assert "\n" not in str(info.value) and gallery.model.sha256[:12] in str(info.value)
    with pytest.raises(ValueError, match="another model"):
        search_gallery(gallery, other, face(0))


def test_results_json(setup, tmp_path):
    _, model, gallery = setup
    results = search_gallery(gallery, model, [gallery.paths[0]], top_k=2)
    write_results(tmp_path / "r.json", results, top_k=2)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data == results_to_dict(results, top_k=2)
    (entry,) = data["results"]
    assert entry["query"] == gallery.paths[0]
    assert set(entry["matches"][0]) == {"identity", "score", "path"}
    assert entry["matches"][0]["identity"] == "id0"


@pytest.mark.skipif(not faiss_index.faiss_available(), reason="faiss not installed")
def test_faiss_index_saved_beside_the_gallery(setup, tmp_path):
    root, model, _ = setup
    save_gallery(build_gallery(model, root / "faces"), tmp_path / "g")
    gallery = load_gallery(tmp_path / "g")
    assert "IndexFlatIP" in add_faiss_index(gallery)
    reloaded = load_gallery(tmp_path / "g")
    assert reloaded.index["rows"] == 15 and (tmp_path / "g" / FAISS_FILE).is_file()
    index, how = open_faiss_index(reloaded)
    assert str(tmp_path / "g" / FAISS_FILE) in how
    queries = [face(k, seed=90 + k) for k in range(3)]
    exact = search_gallery(reloaded, model, queries, top_k=4)
    approx = search_gallery(reloaded, model, queries, top_k=4, index=index)
    assert [[m.row for m in r.matches] for r in approx] == [
        [m.row for m in r.matches] for r in exact
    ]
    # a rebuilt gallery drops the stale index file
    save_gallery(build_gallery(model, root / "faces"), tmp_path / "g", overwrite=True)
    assert not (tmp_path / "g" / FAISS_FILE).exists()
    _, how = open_faiss_index(load_gallery(tmp_path / "g"))
    assert "built in memory" in how
