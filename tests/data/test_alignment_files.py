import numpy as np
import pytest
from PIL import Image

from sphereface2.data.alignment import (
    REFERENCE_LANDMARKS_112,
    LandmarksFileError,
    align_images,
    read_landmarks_file,
)
from sphereface2.data.decode import encode_jpeg, read_image


def _line(path, points, score=None):
    values = " ".join(f"{v:.4f}" for v in np.asarray(points).ravel())
    return f"{path} {values}" + (f" {score}" if score is not None else "") + "\n"


def test_read_landmarks_file_parses_points_and_optional_score(tmp_path):
    shifted = REFERENCE_LANDMARKS_112 + 3.0
    f = tmp_path / "lm.txt"
    f.write_text(_line("a/1.jpg", REFERENCE_LANDMARKS_112) + "\n" + _line("2.jpg", shifted, 0.93))
    entries = read_landmarks_file(f)
    assert [path for path, _ in entries] == ["a/1.jpg", "2.jpg"]
    assert entries[0][1].shape == (5, 2) and entries[0][1].dtype == np.float64
    np.testing.assert_allclose(entries[0][1], REFERENCE_LANDMARKS_112, atol=1e-4)
    np.testing.assert_allclose(entries[1][1], shifted, atol=1e-4)
    # Row-major (x1 y1 x2 y2 ...): the first row is the first point.
    assert entries[0][1][0].tolist() == [38.2946, 51.6963]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.jpg 1 2 3 4 5 6 7 8 9\n", ":1: expected 'path x1 y1 ... x5 y5' (11 fields"),
        ("ok.jpg 1 2 3 4 5 6 7 8 9 10\nb.jpg 1 2 3 4 5 6 7 8 9 10 11 12\n", ":2:"),
        ("a.jpg 1 2 3 4 5 six 7 8 9 10\n", ":1: landmark coordinate 'six' is not a number"),
        ("a.jpg 1 2 3 4 5 nan 7 8 9 10\n", ":1: landmark coordinates must be finite"),
    ],
)
def test_read_landmarks_file_errors_name_file_and_line(tmp_path, text, message):
    f = tmp_path / "bad_lm.txt"
    f.write_text(text)
    with pytest.raises(LandmarksFileError, match="bad_lm.txt") as err:
        read_landmarks_file(f)
    assert message in str(err.value)


def _face(size=(140, 150)):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)


def test_align_images_writes_crops_and_reports_failures(tmp_path):
    images = tmp_path / "loose"
    (images / "p1").mkdir(parents=True)
    face = _face()
    (images / "p1" / "a.jpg").write_bytes(encode_jpeg(face, quality=100))
    Image.fromarray(face).save(images / "p1" / "b.png")
    Image.fromarray(face).save(images / "c.bmp")
    Image.fromarray(face).save(images / "p1" / "d.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xffnot really a jpeg")
    landmarks = REFERENCE_LANDMARKS_112 + 10.0
    lm_file = tmp_path / "landmarks.txt"
    lm_file.write_text(
        _line("p1/a.jpg", landmarks)
        + _line("p1/b.png", landmarks)
        + _line("c.bmp", landmarks)
        + _line("missing.jpg", landmarks)
        + _line("broken.jpg", landmarks)
        + _line("p1/a.jpg", landmarks)  # duplicate output
        + _line("../escape.jpg", landmarks)
        + _line("p1/d.png", np.ones((5, 2)))  # degenerate landmarks
    )
    out = tmp_path / "aligned"
    calls = []
    summary = align_images(
        lm_file, out, image_root=images, quality=90, progress=lambda d, t: calls.append((d, t))
    )

    assert summary["total"] == 8
    assert summary["written"] == 3
    assert summary["output_size"] == [112, 112]
    assert calls[-1] == (8, 8) and len(calls) == 8
    failed = {f["line"]: f for f in summary["failed"]}
    assert sorted(failed) == [4, 5, 6, 7, 8]
    assert failed[4]["image"] == "missing.jpg" and "not found" in failed[4]["reason"]
    assert "broken.jpg" in failed[5]["reason"] and "decode" in failed[5]["reason"]
    assert "already written for line 1" in failed[6]["reason"]
    assert "outside the image root" in failed[7]["reason"]
    assert "coincide" in failed[8]["reason"]

    # Relative paths are mirrored; PNG stays PNG, other formats become JPEG.
    png = np.asarray(Image.open(out / "p1" / "b.png"))
    assert (out / "p1" / "a.jpg").is_file() and (out / "c.jpg").is_file()
    assert not (out / "missing.jpg").exists() and not (tmp_path / "escape.jpg").exists()
    assert not (out / "p1" / "d.png").exists()
    assert png.shape == (112, 112, 3)
    # Landmarks = template + 10: the crop is the source shifted by -10 (lossless for PNG).
    np.testing.assert_array_equal(png[:100, :100], face[10:110, 10:110])
    jpeg = read_image(str(out / "p1" / "a.jpg"))
    assert jpeg.shape == (112, 112, 3)
    assert np.abs(jpeg[:100, :100].astype(int) - face[10:110, 10:110]).mean() < 12


def test_align_images_default_root_and_size(tmp_path):
    Image.fromarray(_face()).save(tmp_path / "x.png")
    lm_file = tmp_path / "lm.txt"
    lm_file.write_text(_line("x.png", REFERENCE_LANDMARKS_112 + 5.0))
    summary = align_images(lm_file, tmp_path / "out", output_size=(112, 96))
    assert summary["failed"] == [] and summary["written"] == 1
    assert np.asarray(Image.open(tmp_path / "out" / "x.png")).shape == (112, 96, 3)


def test_align_images_malformed_file_writes_nothing(tmp_path):
    Image.fromarray(_face()).save(tmp_path / "x.png")
    lm_file = tmp_path / "lm.txt"
    lm_file.write_text(_line("x.png", REFERENCE_LANDMARKS_112) + "y.png 1 2 3\n")
    with pytest.raises(LandmarksFileError, match="lm.txt:2"):
        align_images(lm_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_align_images_rejects_bad_quality(tmp_path):
    with pytest.raises(ValueError, match="quality"):
        align_images(tmp_path / "lm.txt", tmp_path / "out", quality=0)
