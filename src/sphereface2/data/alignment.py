"""Five-point face alignment: similarity transform onto the ArcFace 112x112 template.

Conventions used throughout:

* Sizes are ``(H, W)``, as in :mod:`sphereface2.data.transforms`.
* Points are ``(x, y)`` in pixel coordinates where pixel ``(col, row)`` has its centre at
  integer ``(col, row)`` (the OpenCV / InsightFace convention that landmark detectors use).
* Landmarks come in the template's order: left eye, right eye, nose tip, left mouth
  corner, right mouth corner, where "left" is the image's left (the subject's right eye).
* A transform is a (2, 3) float64 matrix ``M`` that maps source points to aligned points:
  ``[x', y'] = M @ [x, y, 1]``.

The similarity transform is the closed-form linear least-squares fit of
``[[a, -b, tx], [b, a, ty]]`` (see :func:`estimate_similarity_transform`); in 2-D this is
the same optimum as Umeyama's method restricted to proper rotations, and it cannot
produce a reflection. Warping is plain numpy bilinear sampling with a zero border, the
same semantics as ``cv2.warpAffine(..., INTER_LINEAR, BORDER_CONSTANT)``; no OpenCV.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sphereface2.data.decode import ImageDecodeError, encode_jpeg, read_image

#: ArcFace/InsightFace 5-point template for 112x112 crops, (x, y) per row.
REFERENCE_LANDMARKS_112 = np.array(
    [
        [38.2946, 51.6963],  # left eye
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # left mouth corner
        [70.7299, 92.2041],  # right mouth corner
    ],
    dtype=np.float64,
)
REFERENCE_LANDMARKS_112.setflags(write=False)

Size = tuple[int, int]


class LandmarksFileError(ValueError):
    """A malformed landmarks file; the message names the file and the line."""


def _check_size(output_size: Sequence[int]) -> Size:
    size = tuple(int(v) for v in output_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"output_size must be (H, W) with positive entries, got {output_size}")
    return size  # type: ignore[return-value]


def reference_landmarks(output_size: Sequence[int] = (112, 112)) -> np.ndarray:
    """The 5-point template for an ``(H, W)`` crop.

    112x112 is the template as published. For other sizes the template is scaled
    uniformly by ``H / 112`` and centred horizontally, i.e. shifted in x by
    ``(W - 112 * H / 112) / 2``. That gives exactly InsightFace's templates for 112x96
    (x shifted by -8, the SphereFace 96x112 crop) and for 224x224 (scaled by 2). It differs
    from InsightFace for 128x128, where InsightFace keeps the 112 scale and shifts x by 8;
    here the face is scaled by 128/112 instead, so the whole face still fills the crop.
    """
    height, width = _check_size(output_size)
    scale = height / 112.0
    template = REFERENCE_LANDMARKS_112 * scale
    template[:, 0] += (width - 112.0 * scale) / 2.0
    return template


def _as_points(points: Any, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array


def estimate_similarity_transform(src: Any, dst: Any) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale >= 0, translation).

    Returns the (2, 3) float64 ``M = [[a, -b, tx], [b, a, ty]]`` minimising
    ``sum_i ||M @ [src_i, 1] - dst_i||^2``. With the points as complex numbers
    ``z = x + iy`` this is ``dst ~ c * src + t`` with complex ``c = a + ib``, whose
    normal equations have the closed form ``c = sum(conj(s_i) d_i) / sum(|s_i|^2)`` on
    centred points. The linear part is always a scaled rotation (determinant
    ``a^2 + b^2 >= 0``), so a reflection is never produced; for mirrored inputs the
    result is the best rotation instead.
    """
    src = _as_points(src, "src")
    dst = _as_points(dst, "dst")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same shape, got {src.shape} and {dst.shape}")
    if src.shape[0] < 2:
        raise ValueError(f"need at least 2 point pairs, got {src.shape[0]}")
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    zs_c = zs - zs.mean()
    zd_c = zd - zd.mean()
    spread = float(np.sum(np.abs(zs_c) ** 2))
    if spread <= 1e-12 * max(1.0, float(np.max(np.abs(zs))) ** 2):
        raise ValueError("src points all coincide; a similarity transform is undefined")
    c = np.sum(np.conj(zs_c) * zd_c) / spread
    t = zd.mean() - c * zs.mean()
    return np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]], dtype=np.float64)


def _check_matrix(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must have shape (2, 3), got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("affine matrix contains non-finite values")
    if abs(np.linalg.det(m[:, :2])) < 1e-12:
        raise ValueError(f"affine matrix is singular: {m.tolist()}")
    return m


def invert_affine(matrix: Any) -> np.ndarray:
    """Inverse of a (2, 3) affine transform, as a (2, 3) matrix."""
    m = _check_matrix(matrix)
    linear_inv = np.linalg.inv(m[:, :2])
    return np.hstack([linear_inv, -linear_inv @ m[:, 2:]])


def warp_affine(rgb: np.ndarray, matrix: Any, output_size: Sequence[int]) -> np.ndarray:
    """Warp an RGB uint8 (h, w, 3) image with the (2, 3) ``matrix`` into an ``(H, W)`` image.

    Output pixel ``(x, y)`` takes the bilinear interpolation of the input at
    ``inverse(matrix) @ (x, y, 1)``; pixels outside the input count as 0, so the border is
    black and edge pixels blend towards black (OpenCV's BORDER_CONSTANT). Values are
    rounded to the nearest integer.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {rgb.dtype} {rgb.shape}")
    out_h, out_w = _check_size(output_size)
    inv = invert_affine(matrix)
    in_h, in_w = rgb.shape[:2]

    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0 = np.floor(sx)
    y0 = np.floor(sy)
    fx = (sx - x0).astype(np.float32)[..., None]
    fy = (sy - y0).astype(np.float32)[..., None]
    # One ring of zeros around the input: clipping indices into the padded image makes every
    # sample outside the input read zeros without per-neighbour masks.
    padded = np.zeros((in_h + 2, in_w + 2, 3), dtype=np.float32)
    padded[1:-1, 1:-1] = rgb
    xi0 = np.clip(x0 + 1, 0, in_w + 1).astype(np.intp)
    xi1 = np.clip(x0 + 2, 0, in_w + 1).astype(np.intp)
    yi0 = np.clip(y0 + 1, 0, in_h + 1).astype(np.intp)
    yi1 = np.clip(y0 + 2, 0, in_h + 1).astype(np.intp)
    top = padded[yi0, xi0] * (1 - fx) + padded[yi0, xi1] * fx
    bottom = padded[yi1, xi0] * (1 - fx) + padded[yi1, xi1] * fx
    out = top * (1 - fy) + bottom * fy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def alignment_transform(landmarks: Any, output_size: Sequence[int] = (112, 112)) -> np.ndarray:
    """The (2, 3) similarity transform taking 5 landmarks onto the template for ``output_size``."""
    points = _as_points(landmarks, "landmarks")
    if points.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {points.shape}")
    return estimate_similarity_transform(points, reference_landmarks(output_size))


def align_face(
    rgb: np.ndarray, landmarks: Any, output_size: Sequence[int] = (112, 112)
) -> np.ndarray:
    """Crop an aligned ``(H, W)`` face from an RGB uint8 image given its 5 landmarks.

    See :func:`reference_landmarks` for the template used at sizes other than 112x112.
    """
    size = _check_size(output_size)
    return warp_affine(rgb, alignment_transform(landmarks, size), size)


# --- landmark files and batch alignment ---------------------------------------------------


def _iter_landmark_lines(path: str) -> Iterator[tuple[int, str, np.ndarray]]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (11, 12):
                raise LandmarksFileError(
                    f"{path}:{line_no}: expected 'path x1 y1 ... x5 y5' (11 fields, or 12 with a "
                    f"trailing detector score), got {len(fields)}"
                )
            try:
                values = np.array([float(v) for v in fields[1:11]], dtype=np.float64)
            except ValueError:
                bad = next(v for v in fields[1:11] if not _is_float(v))
                raise LandmarksFileError(
                    f"{path}:{line_no}: landmark coordinate {bad!r} is not a number"
                ) from None
            if not np.all(np.isfinite(values)):
                raise LandmarksFileError(f"{path}:{line_no}: landmark coordinates must be finite")
            yield line_no, fields[0], values.reshape(5, 2)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_landmarks_file(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """Read ``path x1 y1 x2 y2 ... x5 y5`` lines into ``[(image_path, (5, 2) array), ...]``.

    A 12th column (the detector score of IJB's ``*_name_5pts_score.txt``) is accepted and
    ignored. Blank lines are skipped; other malformed lines raise
    :class:`LandmarksFileError` naming the file and line. Paths are returned as written.
    """
    return [(image, points) for _, image, points in _iter_landmark_lines(str(path))]


def _output_path(relative: str) -> str:
    """PNG stays PNG (lossless in, lossless out); everything else becomes JPEG."""
    suffix = Path(relative).suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        return relative
    return str(Path(relative).with_suffix(".jpg"))


def _relative_path(image: str, image_root: str) -> str:
    """The path of ``image`` below the output folder; raises ValueError if it would escape."""
    if os.path.isabs(image):
        relative = os.path.relpath(image, image_root)
    else:
        relative = os.path.normpath(image)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep) or os.path.isabs(relative):
        raise ValueError(f"path is outside the image root {image_root}, cannot mirror it")
    return relative


def _save(rgb: np.ndarray, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        Image.fromarray(rgb).save(path, format="PNG")
    else:
        path.write_bytes(encode_jpeg(rgb, quality=quality))


def align_images(
    landmarks_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    image_root: str | os.PathLike | None = None,
    output_size: Sequence[int] = (112, 112),
    quality: int = 95,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Align every image listed in a landmarks file and write the crops under ``out_dir``.

    Image paths in the file are relative to ``image_root`` (default: the file's folder);
    each crop is written at the same relative path below ``out_dir``. PNG sources are
    written as PNG, JPEG sources as JPEG (``quality``), any other format as JPEG with a
    ``.jpg`` suffix.

    A malformed landmarks file raises :class:`LandmarksFileError` before anything is
    written. Per-image problems (missing file, undecodable image, degenerate landmarks,
    a path outside the image root, two entries writing the same output) do not stop the
    run: they are collected and the rest is written. The returned summary has ``total``,
    ``written``, ``failed`` (a list of ``{"line", "image", "reason"}``) and the settings;
    callers decide what a non-empty ``failed`` means (the CLI exits non-zero).
    ``progress(done, total)`` is called after each entry.
    """
    landmarks_file = str(landmarks_file)
    root = (
        str(image_root)
        if image_root is not None
        else os.path.dirname(os.path.abspath(landmarks_file))
    )
    size = _check_size(output_size)
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    entries = list(_iter_landmark_lines(landmarks_file))
    out_root = Path(out_dir)
    out_root.mkdir(parents=True, exist_ok=True)

    failed: list[dict[str, Any]] = []
    written_at: dict[str, int] = {}
    for done, (line_no, image, points) in enumerate(entries, start=1):
        source = os.path.join(root, image)
        try:
            relative = _output_path(_relative_path(image, root))
            if relative in written_at:
                raise ValueError(
                    f"output {relative} was already written for line {written_at[relative]}"
                )
            if not os.path.isfile(source):
                raise FileNotFoundError(f"image not found: {source}")
            crop = align_face(read_image(source), points, size)
        except (FileNotFoundError, ImageDecodeError, ValueError) as err:
            failed.append({"line": line_no, "image": image, "reason": str(err)})
        else:
            # Write errors (disk full, permissions) are not per-image problems: let them raise.
            _save(crop, out_root / relative, quality)
            written_at[relative] = line_no
        if progress is not None:
            progress(done, len(entries))
    return {
        "landmarks_file": landmarks_file,
        "image_root": root,
        "out_dir": str(out_root),
        "output_size": list(size),
        "total": len(entries),
        "written": len(written_at),
        "failed": failed,
    }
