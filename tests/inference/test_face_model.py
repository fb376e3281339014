"""load_model / FaceModel: embeddings against a float64 reference, inputs, options, exports."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny_inference import DIM, SIZE, face, reference_embedding, run_folder

import sphereface2
from sphereface2.inference import FaceModel, load_model
from sphereface2.inference.fingerprint import ONNX_KIND, TORCH_KIND


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_folder(tmp_path_factory.mktemp("run") / "run")


def test_package_level_load_model_is_lazy():
    assert sphereface2.load_model is load_model
    code = "import sys, sphereface2; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sphereface2.nope  # noqa: B018


def test_embed_matches_the_float64_reference(run):
    path, weights = run
    model = load_model(path, device="cpu")
    assert isinstance(model, FaceModel)
    assert (model.input_size, model.embedding_dim, model.run_folder) == ((SIZE, SIZE), DIM, path)
    images = [face(k, seed=k) for k in range(5)]
    out = model.embed(images)
    assert out.dtype == np.float32 and out.shape == (5, DIM)
    np.testing.assert_allclose(out, reference_embedding(weights, images), atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    plain = model.embed(images, flip=False)
    np.testing.assert_allclose(plain, reference_embedding(weights, images, flip=False), atol=2e-6)
    assert not np.allclose(plain, out, atol=1e-3)  # the faces are asymmetric: flip matters
    no_flip = load_model(path, device="cpu", flip=False)
    np.testing.assert_array_equal(no_flip.embed(images), plain)


def test_every_input_kind_gives_the_same_rows(run, tmp_path):
    model = load_model(run[0], device="cpu")
    images = [face(k, seed=k) for k in range(3)]
    paths = []
    for k, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / f"{k}.png")
        paths.append(str(tmp_path / f"{k}.png"))
    expected = model.embed(images)
    np.testing.assert_array_equal(model.embed(paths), expected)
    np.testing.assert_array_equal(model.embed(np.stack(images)), expected)
    np.testing.assert_array_equal(model.embed([Image.open(p) for p in paths]), expected)
    np.testing.assert_allclose(model.embed(paths[1]), expected[1:2], atol=1e-6)  # one: (1, d)
    mixed = model.embed([paths[0], images[1], Image.open(paths[2])], batch_size=1)
    np.testing.assert_allclose(mixed, expected, atol=1e-6)
    assert model.embed([]).shape == (0, DIM)


def test_images_of_another_size_are_resized_as_in_evaluation(run):
    path, weights = run
    model = load_model(path, device="cpu")
    big = face(2, size=2 * SIZE)
    x = torch.from_numpy(big.astype(np.float32)).permute(2, 0, 1)[None].sub(127.5).div(127.5)
    small = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True)
    module = model.model.module
    with torch.no_grad():
        raw = (module(small) + module(small.flip(-1))).double().numpy()
    np.testing.assert_allclose(model.embed(big), raw / np.linalg.norm(raw), atol=2e-6)


def test_compare_shapes_and_values(run):
    model = load_model(run[0], device="cpu")
    a, b, c = face(0, seed=1), face(0, seed=2), face(1, seed=3)
    emb = model.embed([a, b, c]).astype(np.float64)
    same = model.compare(a, b)
    assert isinstance(same, float)
    assert same == pytest.approx(emb[0] @ emb[1], abs=1e-6)
    assert model.compare(a, a) == pytest.approx(1.0, abs=1e-6)
    one_to_many = model.compare(a, [b, c])
    np.testing.assert_allclose(one_to_many, [emb[0] @ emb[1], emb[0] @ emb[2]], atol=1e-6)
    pairs = model.compare([a, b], [c, c])
    np.testing.assert_allclose(pairs, [emb[0] @ emb[2], emb[1] @ emb[2]], atol=1e-6)
    with pytest.raises(ValueError, match="2 images against 3"):
        model.compare([a, b], [a, b, c])


def test_errors(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_model(tmp_path / "nothing")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        load_model(run[0], batch_size=0)
    model = load_model(run[0], device="cpu")
    with pytest.raises(ValueError, match="<array 1>: expected an RGB uint8"):
        model.embed([face(0), np.zeros((SIZE, SIZE), np.uint8)])


def test_fingerprint_follows_the_weights_not_the_file(run, tmp_path):
    from sphereface2.export.safetensors_export import export_safetensors

    path, _ = run
    model = load_model(path / "model.pt", device="cpu")
    export_safetensors(path / "model.pt", tmp_path / "export")
    exported = load_model(tmp_path / "export", device="cpu")
    assert model.fingerprint.kind == TORCH_KIND and len(model.fingerprint.sha256) == 64
    assert exported.fingerprint.matches(model.fingerprint)
    older = load_model(path / "checkpoints" / "ckpt_00000003.pt", device="cpu")
    assert not older.fingerprint.matches(model.fingerprint)  # model.pt holds other weights
    with torch.no_grad():
        next(exported.model.module.parameters()).view(-1)[0] += 1e-3
    exported.__dict__.pop("fingerprint")  # the cached hash
    assert not exported.fingerprint.matches(model.fingerprint)


@pytest.mark.slow
def test_onnx_model_embeds_and_is_fingerprinted_by_its_file(run, tmp_path):
    pytest.importorskip("onnxruntime")
    from sphereface2.export.onnx_export import export_onnx

    path, weights = run
    export_onnx(path, tmp_path / "m.onnx")
    model = load_model(tmp_path / "m.onnx", device="auto")  # no CUDA provider: the CPU
    images = [face(k, seed=k) for k in range(3)]
    np.testing.assert_allclose(model.embed(images), reference_embedding(weights, images), atol=1e-4)
    digest = hashlib.sha256((tmp_path / "m.onnx").read_bytes()).hexdigest()
    assert (model.fingerprint.kind, model.fingerprint.sha256) == (ONNX_KIND, digest)
