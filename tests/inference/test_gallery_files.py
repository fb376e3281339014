"""build_gallery / save_gallery / load_gallery: rows, identities, paths, no pickle, errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from tiny_inference import face_folder, run_folder

from sphereface2.inference import load_model
from sphereface2.inference.gallery import (
    EMBEDDINGS_FILE,
    META_FILE,
    build_gallery,
    load_gallery,
    save_gallery,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gallery")
    run, _ = run_folder(root / "run")
    rows = face_folder(root / "faces", identities=3, per_identity=2)
    return root, load_model(run, device="cpu"), rows


def test_a_folder_gallery_round_trips(setup, tmp_path):
    root, model, rows = setup
    gallery = build_gallery(model, root / "faces", model_path=root / "run")
    paths = [str(root / "faces" / rel) for rel, _ in rows]
    assert gallery.paths == paths and all(os.path.isabs(p) for p in gallery.paths)
    assert gallery.identities == ["id0", "id1", "id2"]
    assert gallery.labels.tolist() == [label for _, label in rows]
    np.testing.assert_array_equal(gallery.embeddings, model.embed(paths))
    assert gallery.flip and gallery.model.matches(model.fingerprint)
    save_gallery(gallery, tmp_path / "g")
    meta = json.loads((tmp_path / "g" / META_FILE).read_text())
    assert (meta["format"], meta["rows"], meta["dim"]) == ("sphereface2-gallery", 6, 16)
    assert meta["model"]["sha256"] == model.fingerprint.sha256
    assert meta["model_path"] == str(root / "run") and meta["index"] is None
    stored = np.load(tmp_path / "g" / EMBEDDINGS_FILE, allow_pickle=False)
    assert stored.dtype == np.float32
    loaded = load_gallery(tmp_path / "g")
    assert isinstance(loaded.embeddings, np.memmap)
    np.testing.assert_array_equal(loaded.embeddings, gallery.embeddings)
    assert (loaded.identities, loaded.paths) == (gallery.identities, gallery.paths)
    assert loaded.labels.tolist() == gallery.labels.tolist()
    assert loaded.starts.tolist() == [0, 2, 4] and loaded.folder == tmp_path / "g"
    with pytest.raises(FileExistsError, match="already holds a gallery"):
        save_gallery(gallery, tmp_path / "g")
    save_gallery(gallery, tmp_path / "g", overwrite=True)


def test_a_list_gallery_is_grouped_by_identity(setup, tmp_path):
    root, model, rows = setup
    # names in shuffled order: the rows come out grouped, file order kept within a name
    order = [5, 0, 3, 1, 4, 2]
    lines = [f"{root / 'faces' / rows[i][0]} person{rows[i][1]}" for i in order]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    gallery = build_gallery(model, tmp_path / "list.txt", flip=False)
    assert gallery.identities == ["person0", "person1", "person2"]
    assert gallery.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert gallery.paths == [str(root / "faces" / rows[i][0]) for i in [0, 1, 3, 2, 5, 4]]
    assert not gallery.flip
    np.testing.assert_array_equal(gallery.embeddings, model.embed(gallery.paths, flip=False))
    (tmp_path / "int.txt").write_text(f"{root / 'faces' / rows[0][0]} 4\n")
    numbered = build_gallery(model, tmp_path / "int.txt")
    assert numbered.identities == ["0", "1", "2", "3", "4"] and numbered.labels.tolist() == [4]


def test_unreadable_galleries_name_the_file(setup, tmp_path):
    root, model, _ = setup
    with pytest.raises(FileNotFoundError, match="not a gallery"):
        load_gallery(tmp_path)
    with pytest.raises(FileNotFoundError, match="gallery images not found"):
        build_gallery(model, tmp_path / "nope")
    save_gallery(build_gallery(model, root / "faces"), tmp_path / "g")
    meta_path = tmp_path / "g" / META_FILE
    meta = json.loads(meta_path.read_text())
    for change, message in [
        ({"format": "x"}, "not a sphereface2 gallery"),
        ({"version": 9}, "gallery version 9"),
        ({"rows": 5}, r"says float32 \(5, 16\)"),
        ({"labels": [0, 1, 0, 1, 2, 2]}, "labels: gallery rows are not grouped"),
        ({"labels": [0, 0, 1, 1, 2, 7]}, "labels must index the 3 identities"),
        ({"flip": "yes"}, "flip: expected"),
    ]:
        meta_path.write_text(json.dumps({**meta, **change}))
        with pytest.raises(ValueError, match=message) as info:
            load_gallery(tmp_path / "g")
        assert str(meta_path) in str(info.value) or "embeddings.npy" in str(info.value)
    broken = dict(meta)
    del broken["model"]["sha256"]
    meta_path.write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"gallery.json: model.sha256: missing"):
        load_gallery(tmp_path / "g")
