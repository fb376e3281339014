"""What FaceModel.embed accepts: paths, RGB arrays, PIL images, one or many."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sphereface2.data.decode import ImageDecodeError
from sphereface2.inference.images import as_image_list, image_label, load_rgb


def test_single_inputs_are_one_image(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    for item in ("a.png", tmp_path / "a.png", rgb, Image.fromarray(rgb)):
        items, single = as_image_list(item)
        assert single and len(items) == 1 and items[0] is item


def test_many_inputs():
    rgb = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    items, single = as_image_list(rgb)
    assert not single and len(items) == 2
    np.testing.assert_array_equal(items[1], rgb[1])
    items, single = as_image_list(["a.png", rgb[0]])
    assert not single and len(items) == 2
    assert as_image_list([]) == ([], False)


@pytest.mark.parametrize("bad", [b"bytes", {"a": 1}, 3])
def test_other_kinds_are_refused(bad):
    with pytest.raises(TypeError, match="images must be a path"):
        as_image_list(bad)


def test_load_rgb_converts_pil_modes_and_reads_files(tmp_path):
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    out = load_rgb(Image.fromarray(gray, mode="L"))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    np.testing.assert_array_equal(load_rgb(str(tmp_path / "x.png")), rgb)
    np.testing.assert_array_equal(load_rgb(Path(tmp_path / "x.png")), rgb)


def test_load_rgb_errors_name_the_image(tmp_path):
    with pytest.raises(ValueError, match=r"<array 3>: expected an RGB uint8 \(H, W, 3\)"):
        load_rgb(np.zeros((4, 4, 3), np.float32), 3)
    with pytest.raises(ValueError, match="<array 0>: expected"):
        load_rgb(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageDecodeError, match="missing.png"):
        load_rgb(str(tmp_path / "missing.png"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageDecodeError, match="bad.jpg"):
        load_rgb(tmp_path / "bad.jpg")
    with pytest.raises(TypeError, match="image 2"):
        load_rgb(1.5, 2)  # type: ignore[arg-type]


def test_read_only_arrays_are_copied_not_warned_about():
    rgb = np.zeros((3, 3, 3), np.uint8)
    rgb.flags.writeable = False
    out = load_rgb(rgb)
    assert out.flags.writeable
    np.testing.assert_array_equal(out, rgb)


def test_image_label():
    assert image_label("a/b.png", 4) == "a/b.png"
    assert image_label(np.zeros((1, 1, 3), np.uint8), 4) == "<array 4>"
    assert image_label(Image.new("RGB", (1, 1)), 0) == "<PIL image 0>"
