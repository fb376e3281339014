"""A small synthetic IJB-B / IJB-C set in the real layout, for the image-level IJB tests.

``write_ijb_fixture(root)`` writes::

    root/IJB_release/IJBC/meta/ijbc_face_tid_mid.txt       image template_id media_id
    root/IJB_release/IJBC/meta/ijbc_name_5pts_score.txt    image x1 y1 ... x5 y5 faceness
    root/IJB_release/IJBC/meta/ijbc_template_pair_label.txt
    root/IJB_release/IJBC/meta/ijbc_1N_gallery_G1.csv, _G2.csv, ijbc_1N_probe_mixed.csv
    root/IJB_release/IJBC/loose_crop/<k>.jpg|png

(``ijbb_`` prefixes and galleries S1/S2 for IJBB). Every loose crop is made from a known aligned
face: a smooth, identity-dependent ``crop_size`` image is warped into a larger noisy background
by a random similarity transform, and its landmarks are the template landmarks carried by that
transform. Aligning the loose crop with the written landmarks therefore gives back (up to
interpolation) the face it was made from, which a test can check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sphereface2.data.alignment import reference_landmarks, warp_affine
from sphereface2.data.decode import encode_jpeg

GALLERY_NAMES = {"IJBB": ("S1", "S2"), "IJBC": ("G1", "G2")}


@dataclass
class IJBFixture:
    """What was written, for tests to compare with.

    Attributes:
        root: the folder holding ``IJB_release``.
        set_dir: ``root/IJB_release/<name>``.
        name: ``IJBB`` or ``IJBC``.
        image_names: loose-crop file names in meta-file order.
        template_ids, media_ids, subjects: per image.
        landmarks: (N, 5, 2) float32, exactly the values written (as a reader parses them).
        faceness: (N,) float32 as written.
        crops: (N, H, W, 3) uint8, the aligned face each loose crop was made from.
        pair_t1, pair_t2, pair_labels: the 1:1 pairs.
        galleries: per 1:N gallery, ``(template_ids, subject_ids)``.
        probes: ``(template_ids, subject_ids)`` of the mixed probe set.
    """

    root: Path
    set_dir: Path
    name: str
    image_names: list[str]
    template_ids: np.ndarray
    media_ids: np.ndarray
    subjects: np.ndarray
    landmarks: np.ndarray
    faceness: np.ndarray
    crops: np.ndarray
    pair_t1: np.ndarray
    pair_t2: np.ndarray
    pair_labels: np.ndarray
    galleries: list[tuple[np.ndarray, np.ndarray]]
    probes: tuple[np.ndarray, np.ndarray]

    @property
    def meta_dir(self) -> Path:
        return self.set_dir / "meta"

    @property
    def image_dir(self) -> Path:
        return self.set_dir / "loose_crop"

    def meta_file(self, kind: str) -> Path:
        """``kind``: face_tid_mid, name_5pts_score, template_pair_label, ..."""
        return self.meta_dir / f"{self.name.lower()}_{kind}"


def smooth_face(rng: np.random.Generator, subject: int, size: tuple[int, int]) -> np.ndarray:
    """A smooth RGB face-like image: subject-dependent colours and gradients, small per-image
    variation (smooth, so that resampling changes it little)."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ys, xs = ys / max(h - 1, 1), xs / max(w - 1, 1)
    sub = np.random.default_rng(1000 + subject)
    image = np.empty((h, w, 3))
    for c in range(3):
        a, b, phase = sub.uniform(-1, 1, 3)
        image[..., c] = (
            128
            + 50 * a * (xs - 0.3)  # left-right asymmetric: the flip test sees a different image
            + 40 * b * ys
            + 30 * np.sin(2 * np.pi * (xs + ys) + 6 * phase)
            + rng.normal(0, 4)
        )
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _similarity(rng: np.random.Generator, crop: tuple[int, int], loose: tuple[int, int]):
    """A random crop -> loose similarity transform keeping the face inside the loose image."""
    ch, cw = crop
    lh, lw = loose
    scale = rng.uniform(0.55, 0.75) * min(lh / ch, lw / cw)
    angle = rng.uniform(-0.35, 0.35)
    a, b = scale * np.cos(angle), scale * np.sin(angle)
    linear = np.array([[a, -b], [b, a]])
    corners = linear @ np.array([[0, cw, 0, cw], [0, 0, ch, ch]], dtype=np.float64)
    lo, hi = corners.min(1), corners.max(1)
    tx = rng.uniform(-lo[0], lw - 1 - hi[0])
    ty = rng.uniform(-lo[1], lh - 1 - hi[1])
    return np.hstack([linear, [[tx], [ty]]])


def _loose_crop(rng, face: np.ndarray, matrix: np.ndarray, loose: tuple[int, int]) -> np.ndarray:
    warped = warp_affine(face, matrix, loose)
    inside = warp_affine(np.full_like(face, 255), matrix, loose)[..., :1] == 255
    background = rng.integers(0, 256, (*loose, 3), dtype=np.uint8)
    return np.where(inside, warped, background)


def write_ijb_fixture(
    root: str | Path,
    name: str = "IJBC",
    subjects: int = 6,
    templates_per_subject: int = 2,
    images_per_template: tuple[int, int] = (2, 5),
    loose_size: tuple[int, int] = (70, 60),
    crop_size: tuple[int, int] = (16, 16),
    image_format: str = "png",
    seed: int = 0,
) -> IJBFixture:
    """Write the fixture (see the module docstring) and return what it holds.

    Templates get non-contiguous ids; images of a template share media ids (frames of one
    video) in groups; media ids are unique across templates except that the first media of
    a subject's templates are the same (IJB re-uses media across templates). Faceness varies
    in [0.3, 1]. Pairs: every template pair, labelled by subject. 1:N: the subjects' first
    templates split between two galleries, their other templates the mixed probes.

    Args:
        root: where ``IJB_release/<name>`` goes.
        name: ``IJBB`` or ``IJBC``.
        subjects: number of subjects.
        templates_per_subject: templates per subject (>= 2 for 1:N probes).
        images_per_template: inclusive range of images per template.
        loose_size: (H, W) of every loose crop.
        crop_size: (H, W) of the known aligned faces.
        image_format: ``png`` (lossless: alignment is exactly reproducible) or ``jpg``.
        seed: random seed.
    """
    if name not in GALLERY_NAMES:
        raise ValueError(f"name must be IJBB or IJBC, got {name!r}")
    rng = np.random.default_rng(seed)
    set_dir = Path(root) / "IJB_release" / name
    (set_dir / "meta").mkdir(parents=True, exist_ok=True)
    (set_dir / "loose_crop").mkdir(parents=True, exist_ok=True)
    prefix = name.lower()
    template_of_subject: dict[int, list[int]] = {}
    names, tids, mids, subs, crops, lmk_rows, lmks, scores = [], [], [], [], [], [], [], []
    next_media = 500
    template = reference_landmarks(crop_size)
    for s in range(subjects):
        shared_media = next_media
        next_media += 1
        for k in range(templates_per_subject):
            tid = 3 + 7 * (s * templates_per_subject + k) + int(rng.integers(0, 3))
            template_of_subject.setdefault(s, []).append(tid)
            count = int(rng.integers(images_per_template[0], images_per_template[1] + 1))
            media = shared_media
            for j in range(count):
                if j > 0 and rng.random() < 0.5:  # start another media (a new video or photo)
                    media = next_media
                    next_media += 1
                index = len(names) + 1
                image_name = f"{index}.{image_format}"
                face = smooth_face(rng, s, crop_size)
                matrix = _similarity(rng, crop_size, loose_size)
                loose = _loose_crop(rng, face, matrix, loose_size)
                path = set_dir / "loose_crop" / image_name
                if image_format == "png":
                    Image.fromarray(loose).save(path)
                else:
                    path.write_bytes(encode_jpeg(loose, quality=95))
                points = template @ matrix[:, :2].T + matrix[:, 2]
                text = [f"{v:.4f}" for v in points.ravel()]
                score = f"{rng.uniform(0.3, 1.0):.5f}"
                lmk_rows.append(f"{image_name} {' '.join(text)} {score}")
                lmks.append(np.array([float(v) for v in text], dtype=np.float32).reshape(5, 2))
                scores.append(np.float32(float(score)))
                names.append(image_name)
                tids.append(tid)
                mids.append(media)
                subs.append(s)
                crops.append(face)
    meta = set_dir / "meta"
    (meta / f"{prefix}_face_tid_mid.txt").write_text(
        "".join(f"{n} {t} {m}\n" for n, t, m in zip(names, tids, mids))
    )
    (meta / f"{prefix}_name_5pts_score.txt").write_text("\n".join(lmk_rows) + "\n")
    all_templates = [(t, s) for s, ts in template_of_subject.items() for t in ts]
    t1, t2, labels = [], [], []
    for i in range(len(all_templates)):
        for j in range(i + 1, len(all_templates)):
            t1.append(all_templates[i][0])
            t2.append(all_templates[j][0])
            labels.append(int(all_templates[i][1] == all_templates[j][1]))
    (meta / f"{prefix}_template_pair_label.txt").write_text(
        "".join(f"{a} {b} {y}\n" for a, b, y in zip(t1, t2, labels))
    )
    tids_a, subs_a = np.array(tids), np.array(subs)

    def write_1n(file_name: str, templates: list[tuple[int, int]]) -> None:
        lines = ["TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID\n"]
        for t, s in templates:
            for i in np.flatnonzero(tids_a == t):
                lines.append(f"{t},{s + 100},{names[i]},{mids[i]}\n")
        (meta / file_name).write_text("".join(lines))

    half = subjects // 2
    first = [(template_of_subject[s][0], s) for s in range(subjects)]
    gallery_parts = [first[:half], first[half:]]
    probes = [(t, s) for s in range(subjects) for t in template_of_subject[s][1:]]
    for g, part in zip(GALLERY_NAMES[name], gallery_parts):
        write_1n(f"{prefix}_1N_gallery_{g}.csv", part)
    write_1n(f"{prefix}_1N_probe_mixed.csv", probes)

    def ids(part):
        return np.array([t for t, _ in part]), np.array([s + 100 for _, s in part])

    return IJBFixture(
        root=Path(root),
        set_dir=set_dir,
        name=name,
        image_names=names,
        template_ids=tids_a,
        media_ids=np.array(mids),
        subjects=subs_a,
        landmarks=np.stack(lmks),
        faceness=np.array(scores, dtype=np.float32),
        crops=np.stack(crops),
        pair_t1=np.array(t1),
        pair_t2=np.array(t2),
        pair_labels=np.array(labels, dtype=bool),
        galleries=[ids(p) for p in gallery_parts],
        probes=ids(probes),
    )
