import math

import numpy as np
import pytest

from sphereface2.data.alignment import (
    REFERENCE_LANDMARKS_112,
    align_face,
    alignment_transform,
    estimate_similarity_transform,
    invert_affine,
    reference_landmarks,
    warp_affine,
)


def _similarity(scale, angle_deg, tx, ty):
    a = scale * math.cos(math.radians(angle_deg))
    b = scale * math.sin(math.radians(angle_deg))
    return np.array([[a, -b, tx], [b, a, ty]])


def _apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def _sse(matrix, src, dst):
    return float(np.sum((_apply(matrix, src) - dst) ** 2))


# --- template -----------------------------------------------------------------------------


def test_reference_template_values_and_sizes():
    assert REFERENCE_LANDMARKS_112.shape == (5, 2)
    assert REFERENCE_LANDMARKS_112.dtype == np.float64
    assert REFERENCE_LANDMARKS_112[2].tolist() == [56.0252, 71.7366]
    assert not REFERENCE_LANDMARKS_112.flags.writeable
    np.testing.assert_array_equal(reference_landmarks((112, 112)), REFERENCE_LANDMARKS_112)
    # 112 high x 96 wide: the SphereFace crop, x shifted by -8, y unchanged.
    t96 = reference_landmarks((112, 96))
    np.testing.assert_allclose(t96[:, 0], REFERENCE_LANDMARKS_112[:, 0] - 8)
    np.testing.assert_allclose(t96[:, 1], REFERENCE_LANDMARKS_112[:, 1])
    np.testing.assert_allclose(reference_landmarks((224, 224)), 2 * REFERENCE_LANDMARKS_112)
    with pytest.raises(ValueError, match="output_size"):
        reference_landmarks((112,))


# --- similarity estimation ----------------------------------------------------------------


def test_estimate_recovers_exact_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, size=(5, 2))
    for params in [(1.0, 0.0, 0.0, 0.0), (0.43, 37.0, -12.5, 80.25), (2.7, -150.0, 300.0, -4.0)]:
        truth = _similarity(*params)
        estimate = estimate_similarity_transform(src, _apply(truth, src))
        assert estimate.shape == (2, 3) and estimate.dtype == np.float64
        np.testing.assert_allclose(estimate, truth, atol=1e-10)


def test_estimate_with_noise_is_the_least_squares_optimum():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 250, size=(5, 2))
    dst = _apply(_similarity(0.5, 20.0, 10.0, -3.0), src) + rng.normal(0, 2.0, size=(5, 2))
    estimate = estimate_similarity_transform(src, dst)

    # Naive reference: normal equations of the 4-parameter linear model (a, b, tx, ty).
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    design = np.array(rows)
    a, b, tx, ty = np.linalg.solve(design.T @ design, design.T @ np.array(rhs))
    np.testing.assert_allclose(estimate, [[a, -b, tx], [b, a, ty]], rtol=1e-9, atol=1e-9)

    # Brute force: no nearby similarity (scale, angle, shift perturbed) fits better.
    best = _sse(estimate, src, dst)
    scale = math.hypot(estimate[0, 0], estimate[1, 0])
    angle = math.degrees(math.atan2(estimate[1, 0], estimate[0, 0]))
    for ds in (-0.01, 0.0, 0.01):
        for da in (-0.5, 0.0, 0.5):
            for dx in (-0.3, 0.0, 0.3):
                for dy in (-0.3, 0.0, 0.3):
                    other = _similarity(
                        scale + ds, angle + da, estimate[0, 2] + dx, estimate[1, 2] + dy
                    )
                    assert _sse(other, src, dst) >= best - 1e-9


def test_estimate_never_reflects():
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, size=(5, 2))
    mirrored = src * np.array([-1.0, 1.0]) + np.array([100.0, 0.0])
    estimate = estimate_similarity_transform(src, mirrored)
    linear = estimate[:, :2]
    assert linear[0, 0] == pytest.approx(linear[1, 1])
    assert linear[0, 1] == pytest.approx(-linear[1, 0])
    assert np.linalg.det(linear) >= 0
    # A reflection would fit exactly; the best proper similarity must leave a residual.
    assert _sse(estimate, src, mirrored) > 1.0


def test_estimate_handles_collinear_points():
    src = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    truth = _similarity(3.0, 90.0, 5.0, 5.0)
    estimate = estimate_similarity_transform(src, _apply(truth, src))
    np.testing.assert_allclose(estimate, truth, atol=1e-12)


@pytest.mark.parametrize(
    ("src", "dst", "message"),
    [
        (np.zeros((5, 3)), np.zeros((5, 3)), r"shape \(N, 2\)"),
        (np.ones((5, 2)), np.ones((4, 2)), "same shape"),
        (np.ones((1, 2)), np.ones((1, 2)), "at least 2"),
        (np.ones((5, 2)), np.zeros((5, 2)), "coincide"),
        (np.array([[0.0, np.nan], [1.0, 1.0]]), np.ones((2, 2)), "non-finite"),
    ],
)
def test_estimate_rejects_bad_input(src, dst, message):
    with pytest.raises(ValueError, match=message):
        estimate_similarity_transform(src, dst)


# --- warping ------------------------------------------------------------------------------


def _naive_warp(rgb, matrix, size):
    """Per-pixel reference: bilinear with zeros outside the input."""
    inv = invert_affine(matrix)
    h, w = rgb.shape[:2]
    out = np.zeros((*size, 3))

    def pixel(r, c):
        return rgb[r, c].astype(float) if 0 <= r < h and 0 <= c < w else np.zeros(3)

    for y in range(size[0]):
        for x in range(size[1]):
            sx, sy = inv @ [x, y, 1.0]
            c0, r0 = math.floor(sx), math.floor(sy)
            fx, fy = sx - c0, sy - r0
            out[y, x] = (1 - fy) * ((1 - fx) * pixel(r0, c0) + fx * pixel(r0, c0 + 1)) + fy * (
                (1 - fx) * pixel(r0 + 1, c0) + fx * pixel(r0 + 1, c0 + 1)
            )
    return out


def test_warp_affine_matches_naive_bilinear_reference():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    matrix = _similarity(1.3, 25.0, 2.0, -1.5)
    matrix[0, 1] += 0.2  # a general affine, not only similarities
    out = warp_affine(rgb, matrix, (8, 10))
    assert out.dtype == np.uint8 and out.shape == (8, 10, 3)
    reference = _naive_warp(rgb, matrix, (8, 10))
    # float32 interpolation vs float64 reference: at most a rounding step apart.
    assert np.max(np.abs(out.astype(float) - reference)) <= 0.5 + 1e-3


def test_warp_affine_identity_and_integer_shift():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    np.testing.assert_array_equal(warp_affine(rgb, identity, (6, 5)), rgb)
    # Moving content 2 right and 1 down: output (x, y) reads input (x - 2, y - 1).
    shifted = warp_affine(rgb, [[1.0, 0, 2], [0, 1.0, 1]], (6, 5))
    np.testing.assert_array_equal(shifted[1:, 2:], rgb[:-1, :-2])
    assert not shifted[0].any() and not shifted[:, :2].any()  # zero border


@pytest.mark.parametrize(
    ("rgb", "matrix", "message"),
    [
        (np.zeros((4, 4), np.uint8), np.eye(2, 3), "RGB uint8"),
        (np.zeros((4, 4, 3), np.float32), np.eye(2, 3), "RGB uint8"),
        (np.zeros((4, 4, 3), np.uint8), np.eye(3), r"shape \(2, 3\)"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((2, 3)), "singular"),
        (np.zeros((4, 4, 3), np.uint8), np.full((2, 3), np.inf), "non-finite"),
    ],
)
def test_warp_affine_rejects_bad_input(rgb, matrix, message):
    with pytest.raises(ValueError, match=message):
        warp_affine(rgb, matrix, (4, 4))


# --- alignment end to end -----------------------------------------------------------------


def _draw_blobs(shape, centres, sigma):
    """Gaussian blobs at sub-pixel ``centres`` (x, y), each in its own colour channel mix."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    image = np.zeros((h, w, 3))
    colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]], dtype=float)
    for (cx, cy), colour in zip(centres, colours):
        blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
        image += blob[..., None] * colour * 255
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _blob_centre(image, centre, radius=7):
    """Intensity-weighted centroid of the pixels within ``radius`` of ``centre``."""
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(float)
    mask = (xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 <= radius**2
    weight = image.astype(float).sum(axis=2) * mask
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


@pytest.mark.parametrize(
    ("scale", "angle", "shift"),
    [(1.0, 0.0, (0.0, 0.0)), (1.9, 28.0, (41.0, 17.5)), (0.8, -63.0, (30.0, 95.0))],
)
def test_align_face_puts_landmarks_on_the_template(scale, angle, shift):
    # A "loose crop" whose five landmark blobs sit at a known similarity image of the template.
    pose = _similarity(scale, angle, *shift)
    landmarks = _apply(pose, REFERENCE_LANDMARKS_112)
    assert landmarks.min() > 10 and landmarks.max() < 290  # all blobs inside the image
    loose = _draw_blobs((300, 300), landmarks, sigma=2.0 * scale)
    aligned = align_face(loose, landmarks)
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    for point in REFERENCE_LANDMARKS_112:
        found = _blob_centre(aligned, point)
        assert np.linalg.norm(found - point) < 0.1, (point, found)  # also catches half-pixel slips


def test_align_face_other_output_size_uses_scaled_template():
    pose = _similarity(1.5, 10.0, 20.0, 30.0)
    landmarks = _apply(pose, REFERENCE_LANDMARKS_112)
    loose = _draw_blobs((240, 240), landmarks, sigma=3.0)
    aligned = align_face(loose, landmarks, output_size=(112, 96))
    assert aligned.shape == (112, 96, 3)
    for point in reference_landmarks((112, 96)):
        assert np.linalg.norm(_blob_centre(aligned, point) - point) < 0.1


def test_alignment_transform_checks_landmark_shape():
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        alignment_transform(np.zeros((4, 2)))
    np.testing.assert_allclose(
        alignment_transform(REFERENCE_LANDMARKS_112), [[1, 0, 0], [0, 1, 0]], atol=1e-12
    )
