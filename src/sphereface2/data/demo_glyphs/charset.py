"""Which characters become identities, and in which font styles each can be drawn.

Every font comes from matplotlib's own ``mpl-data/fonts/ttf`` folder, so the demo set
needs nothing beyond the package's dependencies. An identity is one Unicode character;
its styles are the fonts whose character map really draws it.

Two traps are handled here:

* The Computer Modern fonts (``cm*.ttf``) carry TeX's own encoding behind a Unicode
  character map (code point 0xA1 in ``cmr10`` draws a capital Gamma). For them the
  character is taken from the glyph's PostScript name, not from the code point.
* Look-alikes across alphabets (Latin A, Greek Alpha, Cyrillic A) would be different
  "identities" that no model could tell apart. Each candidate is drawn in a reference
  style, and a candidate is dropped when it correlates above a threshold with an
  earlier kept character, or with its mirror image: training flips images at random
  and the verification protocol sums an image's and its flip's embeddings, so ``b``
  and ``d`` are look-alikes too.
"""

from __future__ import annotations

import logging
import math
import os
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import matplotlib
import numpy as np
from fontTools import agl
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFilter, ImageFont


@dataclass(frozen=True)
class Style:
    """One font file used to draw glyphs.

    ``tex_encoded`` marks fonts whose code points follow TeX's encoding; their glyphs are
    identified by PostScript glyph name instead.
    """

    name: str
    filename: str
    tex_encoded: bool = False

    @property
    def path(self) -> str:
        """Absolute path of the font file inside matplotlib's data folder."""
        return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", self.filename)


def _dejavu(family: str) -> tuple[Style, ...]:
    italic = "Italic" if family == "Serif" else "Oblique"
    stem = f"DejaVu{family}"
    return (
        Style(stem.lower(), f"{stem}.ttf"),
        Style(f"{stem.lower()}-bold", f"{stem}-Bold.ttf"),
        Style(f"{stem.lower()}-{italic.lower()}", f"{stem}-{italic}.ttf"),
        Style(f"{stem.lower()}-bold{italic.lower()}", f"{stem}-Bold{italic}.ttf"),
    )


#: Every style the demo set may use, in a fixed order (the order is part of the format).
STYLES: tuple[Style, ...] = (
    *_dejavu("Sans"),
    *_dejavu("SansMono"),
    *_dejavu("Serif"),
    Style("stixgeneral", "STIXGeneral.ttf"),
    Style("stixgeneral-bold", "STIXGeneralBol.ttf"),
    Style("stixgeneral-italic", "STIXGeneralItalic.ttf"),
    Style("stixgeneral-bolditalic", "STIXGeneralBolIta.ttf"),
    Style("cmr10", "cmr10.ttf", tex_encoded=True),
    Style("cmb10", "cmb10.ttf", tex_encoded=True),
    Style("cmss10", "cmss10.ttf", tex_encoded=True),
    Style("cmti10", "cmti10.ttf", tex_encoded=True),
    Style("cmtt10", "cmtt10.ttf", tex_encoded=True),
    Style("cmmi10", "cmmi10.ttf", tex_encoded=True),
    Style("cmsy10", "cmsy10.ttf", tex_encoded=True),
)

#: The style every candidate must exist in; look-alikes are judged in it.
REFERENCE_STYLE = "dejavusans"

#: Unicode ranges searched for identities, grouped by script; earlier groups win when
#: look-alikes collide (Latin A is kept, Greek Alpha and Cyrillic A are dropped).
SCRIPTS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("ascii", ((0x0021, 0x007E),)),
    ("latin", ((0x00A1, 0x024F), (0x1D00, 0x1D7F), (0xA720, 0xA7FF))),
    ("ipa", ((0x0250, 0x02AF),)),
    ("greek", ((0x0370, 0x03FF),)),
    ("cyrillic", ((0x0400, 0x052F), (0xA640, 0xA69F))),
    ("armenian", ((0x0530, 0x058F),)),
    ("hebrew", ((0x0590, 0x05FF),)),
    ("arabic", ((0x0600, 0x06FF),)),
    ("georgian", ((0x10A0, 0x10FF), (0x2D00, 0x2D2F))),
    ("tifinagh", ((0x2D30, 0x2D7F),)),
    ("canadian", ((0x1400, 0x167F),)),
    ("punctuation", ((0x2010, 0x205E), (0x20A0, 0x20CF))),
    ("letterlike", ((0x2100, 0x214F),)),
    ("arrows", ((0x2190, 0x21FF), (0x27F0, 0x27FF), (0x2900, 0x297F), (0x2B00, 0x2BFF))),
    ("math", ((0x2200, 0x22FF), (0x27C0, 0x27EF), (0x2980, 0x29FF), (0x2A00, 0x2AFF))),
    ("technical", ((0x2300, 0x23FF),)),
    ("box", ((0x2500, 0x259F),)),
    ("shapes", ((0x25A0, 0x25FF),)),
    ("symbols", ((0x2600, 0x26FF),)),
    ("dingbats", ((0x2700, 0x27BF),)),
)

#: Glyphs are drawn at this many times the fingerprint size before being fitted to it.
_DEDUP_SCALE = 3

#: General categories allowed (letters, numbers, symbols, punctuation); marks, spaces
#: and control characters have no shape of their own.
_ALLOWED_CATEGORIES = ("L", "N", "S", "P")


@dataclass(frozen=True)
class Identity:
    """A character that became an identity, with the styles that draw it.

    ``codepoints[i]`` is what to draw in ``styles[i]``: the character itself, except in
    TeX-encoded fonts.
    """

    char: str
    script: str
    styles: tuple[str, ...]
    codepoints: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.styles) != len(self.codepoints):
            raise ValueError(f"{self.codepoint}: one code point per style is needed")

    @property
    def codepoint(self) -> str:
        """``U+XXXX`` form, for reports and metadata."""
        return f"U+{ord(self.char):04X}"


@dataclass(frozen=True)
class CharsetOptions:
    """Knobs of the identity selection; all of them are recorded in meta.json."""

    min_styles: int = 4
    dedup_threshold: float = 0.86
    dedup_size: int = 24
    min_extent: float = 0.25

    def __post_init__(self) -> None:
        if not 1 <= self.min_styles <= len(STYLES):
            raise ValueError(f"min_styles must be in [1, {len(STYLES)}], got {self.min_styles}")
        if not 0.0 < self.dedup_threshold <= 1.0:
            raise ValueError(f"dedup_threshold must be in (0, 1], got {self.dedup_threshold}")
        if self.dedup_size < 8:
            raise ValueError(f"dedup_size must be at least 8, got {self.dedup_size}")
        if not 0.0 <= self.min_extent < 1.0:
            raise ValueError(f"min_extent must be in [0, 1), got {self.min_extent}")


class FontBook:
    """Opens the fonts lazily and maps characters to the code point that draws them.

    ``charmaps`` may be given (e.g. a subset handed to a worker process) to skip reading
    the fonts' character maps.
    """

    def __init__(
        self,
        styles: Sequence[Style] = STYLES,
        charmaps: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.styles = {s.name: s for s in styles}
        self._charmaps = dict(charmaps) if charmaps is not None else None
        self._fonts: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}

    @property
    def charmaps(self) -> dict[str, Mapping[str, int]]:
        """For each style: character -> code point to draw, only for non-empty glyphs."""
        if self._charmaps is None:
            self._charmaps = {name: _read_charmap(style) for name, style in self.styles.items()}
        return self._charmaps

    def font(self, style: str, size: int) -> ImageFont.FreeTypeFont:
        """The style's font at ``size`` pixels, with basic layout (no shaping engine)."""
        key = (style, size)
        if key not in self._fonts:
            self._fonts[key] = ImageFont.truetype(
                self.styles[style].path, size, layout_engine=ImageFont.Layout.BASIC
            )
        return self._fonts[key]

    def glyph_mask(self, char: str, style: str, size: int) -> np.ndarray | None:
        """Grey ink coverage (uint8, cropped to the ink) of ``char`` drawn at ``size`` px.

        Returns None when the style cannot draw the character or the glyph has no ink.
        """
        codepoint = self.charmaps[style].get(char)
        if codepoint is None:
            return None
        return draw_glyph(self.font(style, size), chr(codepoint))


def draw_glyph(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray | None:
    """Draw ``text`` with ``font`` and crop to the ink; None when nothing is drawn."""
    left, top, right, bottom = font.getbbox(text)
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, font=font, fill=255)
    ink = canvas.getbbox()
    if ink is None:
        return None
    return np.asarray(canvas.crop(ink))


def _read_charmap(style: Style) -> dict[str, int]:
    with _quiet_font_logs():
        font = TTFont(style.path, lazy=True)
        cmap = font.getBestCmap() or {}
        loca = font.get("loca")
    out: dict[str, int] = {}
    for codepoint, glyph_name in sorted(cmap.items()):
        if loca is not None:
            index = font.getGlyphID(glyph_name)
            if loca[index] == loca[index + 1]:
                continue  # an empty outline: the font maps the character but draws nothing
        if style.tex_encoded:
            char = agl.toUnicode(glyph_name)
            if len(char) != 1:
                continue
            # Prefer the code point that equals the character when a glyph is mapped twice.
            if char in out and out[char] == ord(char):
                continue
        else:
            char = chr(codepoint)
        out[char] = codepoint
    return out


@contextmanager
def _quiet_font_logs() -> Iterator[None]:
    """Silence fontTools' warnings about the Computer Modern fonts' 1970s-era timestamps."""
    logger = logging.getLogger("fontTools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _is_candidate(char: str) -> bool:
    if unicodedata.category(char)[0] not in _ALLOWED_CATEGORIES:
        return False
    # Precomposed and compatibility characters (accented letters, ligatures, fractions,
    # circled digits) are variants of another character, not identities of their own.
    return unicodedata.decomposition(char) == ""


def candidates(book: FontBook, min_styles: int) -> list[Identity]:
    """Characters in the script ranges drawn by the reference style and >= min_styles styles."""
    charmaps = book.charmaps
    out: list[Identity] = []
    for script, ranges in SCRIPTS:
        for first, last in ranges:
            for codepoint in range(first, last + 1):
                char = chr(codepoint)
                if char not in charmaps[REFERENCE_STYLE] or not _is_candidate(char):
                    continue
                styles = tuple(name for name in book.styles if char in charmaps[name])
                if len(styles) >= min_styles:
                    codepoints = tuple(charmaps[name][char] for name in styles)
                    out.append(Identity(char, script, styles, codepoints))
    return out


def fingerprint(mask: np.ndarray, size: int) -> np.ndarray:
    """Fit a glyph mask into ``size`` x ``size`` (aspect kept), blur, zero-mean, unit-norm.

    The renderer also scales each glyph to its ink box, so two glyphs that differ only in
    size or position (``o`` and ``O``) get the same fingerprint, as they should. The fit is
    centred to the sub-pixel, so the fingerprint of a mirrored glyph is exactly the
    mirrored fingerprint.
    """
    height, width = mask.shape
    side = max(height, width) * size / (size - 4)  # source square mapped onto the output
    left, top = (width - side) / 2, (height - side) / 2
    # Crop with integer bounds (PIL pads outside the mask with zeros), then resample the
    # exact float square inside that crop.
    x0, y0 = math.floor(left), math.floor(top)
    x1, y1 = math.ceil(left + side), math.ceil(top + side)
    padded = Image.fromarray(mask).crop((x0, y0, x1, y1))
    box = (left - x0, top - y0, left - x0 + side, top - y0 + side)
    canvas = padded.resize((size, size), Image.Resampling.BOX, box=box)
    canvas = canvas.filter(ImageFilter.GaussianBlur(1.0))
    vec = np.asarray(canvas, dtype=np.float32).ravel()
    vec = vec - vec.mean()
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def fingerprints(book: FontBook, chars: Iterable[str], size: int) -> np.ndarray:
    """Fingerprints (N, size*size) of ``chars`` in the reference style."""
    font_size = _DEDUP_SCALE * size
    rows = []
    for char in chars:
        mask = book.glyph_mask(char, REFERENCE_STYLE, font_size)
        if mask is None:
            raise ValueError(f"reference style cannot draw U+{ord(char):04X}")
        rows.append(fingerprint(mask, size))
    return np.stack(rows) if rows else np.zeros((0, size * size), np.float32)


def mirror_similarity(prints: np.ndarray, size: int) -> np.ndarray:
    """(N, N) similarity: the larger correlation of a glyph with the other or its mirror."""
    mirrored = prints.reshape(-1, size, size)[:, :, ::-1].reshape(len(prints), -1)
    return np.maximum(prints @ prints.T, prints @ mirrored.T)


def select_identities(options: CharsetOptions, book: FontBook | None = None) -> list[Identity]:
    """The deduplicated identity list, ordered by style count (desc), then script order.

    Deterministic for given fonts: no randomness is involved. Glyphs whose ink spans less
    than ``min_extent`` of the em in both directions (dots, commas, accents) are dropped,
    then each candidate is kept unless it looks like an already kept one. Without a
    ``book`` the result is memoised per ``options`` (the fonts do not change while the
    process runs), which spares repeated builds the second or so it costs.
    """
    if book is None:
        return list(_select_memoised(options))
    return _select(options, book)


@lru_cache(maxsize=4)
def _select_memoised(options: CharsetOptions) -> tuple[Identity, ...]:
    return tuple(_select(options, FontBook()))


def _select(options: CharsetOptions, book: FontBook) -> list[Identity]:
    pool = candidates(book, options.min_styles)
    font_size = _DEDUP_SCALE * options.dedup_size
    sized: list[Identity] = []
    prints = []
    for ident in pool:
        mask = book.glyph_mask(ident.char, REFERENCE_STYLE, font_size)
        if mask is None or max(mask.shape) < options.min_extent * font_size:
            continue
        sized.append(ident)
        prints.append(fingerprint(mask, options.dedup_size))
    if not sized:
        return []
    sim = mirror_similarity(np.stack(prints), options.dedup_size)
    kept: list[int] = []
    for i in range(len(sized)):
        if not kept or sim[i, kept].max() <= options.dedup_threshold:
            kept.append(i)
    chosen = [sized[i] for i in kept]
    # More styles first: those identities show the most within-class variation.
    order = sorted(range(len(chosen)), key=lambda i: (-len(chosen[i].styles), i))
    return [chosen[i] for i in order]
