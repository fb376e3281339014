"""The built-in open-set demo dataset: glyphs of many alphabets drawn with matplotlib's fonts.

An identity is a character (Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew, Arabic,
Canadian syllabics, digits, punctuation, math, arrows, box and shape symbols, ...); a
sample is that character drawn in one of up to 23 font styles (DejaVu Sans/Mono/Serif,
STIX, Computer Modern) under random rotation, scale, shear, shift, stroke weight,
colours, background texture, a stray stroke, an occluding block, blur and noise.
Look-alike characters across alphabets (and mirror images, since training flips) are
removed, and train and test identities are disjoint, as in face recognition.

    >>> from sphereface2.data.demo_glyphs import ensure_demo_dataset
    >>> info = ensure_demo_dataset("data/demo")      # builds once, in seconds
    >>> info.train_rec, info.test_bin

The default image size is 32x32: the backbones need a multiple of 16, and 32 keeps a
width-0.25 SFNet-20 trainable on a CPU in minutes while glyph shapes stay legible.
"""

from .build import (
    GENERATOR_VERSION,
    DemoDatasetInfo,
    DemoParams,
    build_demo_dataset,
    ensure_demo_dataset,
    read_meta,
    split_identities,
)
from .charset import STYLES, CharsetOptions, FontBook, Identity, Style, select_identities
from .pairs import NUM_FOLDS, PairLayout, make_pairs
from .render import Nuisance, Renderer

__all__ = [
    "GENERATOR_VERSION",
    "NUM_FOLDS",
    "STYLES",
    "CharsetOptions",
    "DemoDatasetInfo",
    "DemoParams",
    "FontBook",
    "Identity",
    "Nuisance",
    "PairLayout",
    "Renderer",
    "Style",
    "build_demo_dataset",
    "ensure_demo_dataset",
    "make_pairs",
    "read_meta",
    "select_identities",
    "split_identities",
]
