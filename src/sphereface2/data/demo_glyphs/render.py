"""Draw one sample: a glyph in a font style under random geometric and photometric nuisance.

Order: pick a style, warp the glyph (rotation, scale, aspect, shear, shift) onto a canvas
twice the output size, thicken or thin its strokes, box-filter it down; colour it over a
gradient (and maybe textured) background, add a stray stroke and an occluding block,
then blur and noise. Randomness comes only from the ``numpy.random.Generator`` passed
in, so a sample is a pure function of (identity, generator state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageFilter

from .charset import FontBook, Identity, draw_glyph

#: Font size (pixels) glyph masks are drawn at before the warp shrinks them.
GLYPH_FONT_SIZE = 96


@dataclass(frozen=True)
class Nuisance:
    """Strength of every random nuisance; the defaults are the calibrated demo setting.

    Calibration (SFNet-20 at width 0.25, SphereFace2 head, 2 CPU threads): these defaults
    let training start separating identities after a few hundred iterations; about twice
    these strengths stalled such a network for 700+ iterations, too slow for a demo.

    Geometry is relative to the canvas side: the glyph's longer ink side spans ``scale``
    of it, and its centre moves by up to ``shift`` of it.
    """

    rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.65, 0.9)
    aspect_jitter: float = 0.15
    shear: float = 0.1
    shift: float = 0.06
    bold_p: float = 0.25
    thin_p: float = 0.15
    occlusion_p: float = 0.25
    occlusion_size: tuple[float, float] = (0.15, 0.35)
    clutter_p: float = 0.2
    min_contrast: float = 0.3
    invert_p: float = 0.1
    saturation: float = 1.0
    texture_p: float = 0.3
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 0.9)
    noise_sigma: tuple[float, float] = (2.0, 8.0)

    def __post_init__(self) -> None:
        for name in (
            "bold_p",
            "thin_p",
            "occlusion_p",
            "clutter_p",
            "texture_p",
            "blur_p",
            "invert_p",
            "saturation",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Nuisance.{name} must be in [0, 1], got {value}")
        for name in ("scale", "occlusion_size", "blur_sigma", "noise_sigma"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high:
                raise ValueError(f"Nuisance.{name} must be (low, high) with 0 <= low <= high")
        if not 0.0 < self.scale[1] <= 1.0:
            raise ValueError(f"Nuisance.scale must stay within (0, 1], got {self.scale}")
        if not 0.0 <= self.min_contrast <= 0.9:
            raise ValueError(f"Nuisance.min_contrast must be in [0, 0.9], got {self.min_contrast}")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready view (tuples become lists) for meta.json."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }


class GlyphCache:
    """Glyph masks drawn once per (character, style) and reused by all samples."""

    def __init__(self, book: FontBook, font_size: int = GLYPH_FONT_SIZE) -> None:
        self.book = book
        self.font_size = font_size
        self._masks: dict[tuple[str, str], np.ndarray] = {}

    def mask(self, identity: Identity, index: int) -> np.ndarray:
        """uint8 ink mask of ``identity`` in its ``index``-th style, cropped to the ink."""
        style = identity.styles[index]
        key = (identity.char, style)
        if key not in self._masks:
            font = self.book.font(style, self.font_size)
            mask = draw_glyph(font, chr(identity.codepoints[index]))
            if mask is None:
                raise ValueError(f"style {style!r} draws nothing for {identity.codepoint}")
            self._masks[key] = mask
        return self._masks[key]


class Renderer:
    """Draws samples of a fixed output size under a fixed nuisance setting.

    Only the glyph is drawn at twice the output size (then box-filtered down, which
    anti-aliases the warp and the stroke change); colours, clutter and occluders are
    composed at the output size, where they cost a quarter as much.
    """

    def __init__(self, cache: GlyphCache, size: int, nuisance: Nuisance) -> None:
        if size < 8:
            raise ValueError(f"image size must be at least 8 pixels, got {size}")
        self.cache = cache
        self.size = size
        self.nuisance = nuisance
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        self._x, self._y = xx - size / 2, yy - size / 2
        self._ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)

    def render(self, identity: Identity, rng: np.random.Generator) -> np.ndarray:
        """One RGB uint8 (size, size, 3) image of ``identity`` in a random one of its styles."""
        nuisance = self.nuisance
        mask = self.cache.mask(identity, int(rng.integers(len(identity.styles))))
        alpha = np.asarray(_warp_glyph(mask, 2 * self.size, nuisance, rng))
        alpha = _change_stroke(alpha, nuisance, rng)
        # Box-filter 2x down (anti-aliasing the warp and the stroke change) to [0, 1].
        wide = alpha.astype(np.float32)
        summed = wide[0::2, 0::2] + wide[1::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 1::2]
        cover = summed[..., None] * np.float32(1 / (4 * 255))
        ground, ink = _colours(nuisance, rng)
        background = self._background(ground, rng)
        image = background * (1.0 - cover) + ink * cover
        image = self._clutter(image, ink, rng)
        image = self._occlude(image, rng)
        return _degrade(image, nuisance, rng)

    def _background(self, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Float RGB in [0, 1]: ``base``, a linear gradient and optionally a blotchy texture."""
        size = self.size
        theta = rng.uniform(0, 2 * math.pi)
        gradient = math.cos(theta) * self._ramp[None, :] + math.sin(theta) * self._ramp[:, None]
        tint = rng.uniform(-0.35, 0.35, size=3).astype(np.float32)
        image = base + gradient[..., None] * tint
        if rng.random() < self.nuisance.texture_p:
            cells = int(rng.integers(3, 9))
            coarse = rng.uniform(0.3, 0.7, size=(cells, cells, 3))
            texture = Image.fromarray((coarse * 255).astype(np.uint8))
            texture = texture.resize((size, size), Image.Resampling.BICUBIC)
            image = image + np.asarray(texture, dtype=np.float32) / 255.0 - 0.5
        return np.clip(image, 0.0, 1.0)

    def _clutter(self, image: np.ndarray, ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A stray straight stroke in the ink colour, like a neighbouring character's edge."""
        if rng.random() >= self.nuisance.clutter_p:
            return image
        theta = rng.uniform(0, math.pi)
        offset = rng.uniform(0.25, 0.5) * self.size * rng.choice([-1.0, 1.0])
        dist = np.abs(self._x * math.sin(theta) - self._y * math.cos(theta) - offset)
        width = rng.uniform(0.5, 1.5)
        cover = np.clip(width - dist, 0.0, 1.0)[..., None]
        return image * (1 - cover) + ink * cover

    def _occlude(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An opaque rectangle of a random colour somewhere over the image."""
        if rng.random() >= self.nuisance.occlusion_p:
            return image
        size = self.size
        side = rng.uniform(*self.nuisance.occlusion_size) * size
        aspect = math.exp(rng.uniform(-0.7, 0.7))
        w, h = min(side * aspect, size - 1), min(side / aspect, size - 1)
        x0, y0 = int(rng.uniform(0, size - w)), int(rng.uniform(0, size - h))
        x1, y1 = x0 + max(1, round(w)), y0 + max(1, round(h))
        image = image.copy()
        image[y0:y1, x0:x1] = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        return image


def _warp_glyph(
    mask: np.ndarray, canvas: int, nuisance: Nuisance, rng: np.random.Generator
) -> Image.Image:
    """Affine-place the glyph mask on a ``canvas``-sided greyscale image (ink coverage)."""
    height, width = mask.shape
    extent = rng.uniform(*nuisance.scale) * canvas / max(height, width)
    jitter = math.exp(rng.uniform(-nuisance.aspect_jitter, nuisance.aspect_jitter))
    sx, sy = extent * jitter, extent / jitter
    angle = math.radians(rng.uniform(-nuisance.rotation_deg, nuisance.rotation_deg))
    shear = rng.uniform(-nuisance.shear, nuisance.shear)
    cos, sin = math.cos(angle), math.sin(angle)
    # Forward map (glyph -> canvas) = rotation @ shear @ scale, about the glyph centre.
    a, b = cos * sx, (cos * shear - sin) * sy
    c, d = sin * sx, (sin * shear + cos) * sy
    centre_x = canvas / 2 + rng.uniform(-nuisance.shift, nuisance.shift) * canvas
    centre_y = canvas / 2 + rng.uniform(-nuisance.shift, nuisance.shift) * canvas
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    # PIL wants the inverse map (canvas -> glyph) as (a, b, c, d, e, f).
    ox, oy = width / 2, height / 2
    coeffs = (
        ia,
        ib,
        ox - ia * centre_x - ib * centre_y,
        ic,
        id_,
        oy - ic * centre_x - id_ * centre_y,
    )
    source = Image.fromarray(mask)
    if extent < 0.5:
        # Strong shrink: pre-shrink with a box filter so bilinear sampling does not alias.
        factor = max(1, int(1 / extent) // 2)
        source = source.reduce(factor)
        coeffs = tuple(v / factor for v in coeffs)
    return source.transform(
        (canvas, canvas), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR
    )


def _change_stroke(alpha: np.ndarray, nuisance: Nuisance, rng: np.random.Generator) -> np.ndarray:
    """Thicken or thin the strokes by one canvas pixel (half an output pixel), or not."""
    draw = rng.random()
    if draw < nuisance.bold_p:
        return _rank3x3(alpha, np.maximum)
    if draw < nuisance.bold_p + nuisance.thin_p:
        return _rank3x3(alpha, np.minimum)
    return alpha


def _rank3x3(image: np.ndarray, pick: np.ufunc) -> np.ndarray:
    """3x3 max or min filter (edges replicated) as two separable passes of shifted views."""
    padded = np.pad(image, 1, mode="edge")
    rows = pick(pick(padded[:-2], padded[1:-1]), padded[2:])
    return pick(pick(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _colours(nuisance: Nuisance, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(background, ink) base colours whose lumas differ by at least ``min_contrast``.

    Dark ink on a lighter ground, or the reverse with probability ``invert_p``; hue and
    saturation are free. Drawing luma first needs no rejection loop.
    """
    gap = nuisance.min_contrast
    light = rng.uniform(gap, 1.0)
    dark = rng.uniform(0.0, light - gap)
    ground, ink = (dark, light) if rng.random() < nuisance.invert_p else (light, dark)
    return _tint(ground, nuisance, rng), _tint(ink, nuisance, rng)


def _tint(luma: float, nuisance: Nuisance, rng: np.random.Generator) -> np.ndarray:
    """A colour of about the given luma: grey plus a random chroma of random strength."""
    chroma = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
    chroma -= _luma(chroma)
    strength = rng.uniform(0.0, nuisance.saturation)
    return np.clip(luma + strength * chroma, 0.0, 1.0).astype(np.float32)


def _degrade(image: np.ndarray, nuisance: Nuisance, rng: np.random.Generator) -> np.ndarray:
    """Optional blur, then sensor noise; returns uint8 RGB."""
    pixels = image * np.float32(255.0)
    if rng.random() < nuisance.blur_p:
        sigma = rng.uniform(*nuisance.blur_sigma)
        blurred = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(sigma)
        )
        pixels = np.asarray(blurred, dtype=np.float32)
    sigma = np.float32(rng.uniform(*nuisance.noise_sigma))
    pixels += sigma * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
