"""Identity selection, the renderer and the pair layout of the built-in demo dataset."""

from __future__ import annotations

import numpy as np
import pytest

from sphereface2.data.demo_glyphs import (
    NUM_FOLDS,
    CharsetOptions,
    FontBook,
    Identity,
    Nuisance,
    Renderer,
    make_pairs,
    select_identities,
)
from sphereface2.data.demo_glyphs.charset import REFERENCE_STYLE, fingerprints, mirror_similarity
from sphereface2.data.demo_glyphs.pairs import check_pair_parameters
from sphereface2.data.demo_glyphs.render import GlyphCache


@pytest.fixture(scope="module")
def book() -> FontBook:
    return FontBook()


@pytest.fixture(scope="module")
def identities(book: FontBook) -> list:
    return select_identities(CharsetOptions(), book)


def test_charset_is_large_and_every_identity_has_enough_styles(identities, book):
    options = CharsetOptions()
    assert len(identities) >= 1000
    chars = [i.char for i in identities]
    assert len(set(chars)) == len(chars)
    for ident in identities:
        assert len(ident.styles) >= options.min_styles
        assert REFERENCE_STYLE in ident.styles
        for style in ident.styles:
            assert ident.char in book.charmaps[style]
    # Most styles first: the order the build takes identities in.
    counts = [len(i.styles) for i in identities]
    assert counts == sorted(counts, reverse=True)
    assert {"ascii", "greek", "cyrillic", "armenian", "georgian", "hebrew", "math"} <= {
        i.script for i in identities
    }


def test_no_two_kept_identities_are_look_alikes(identities, book):
    options = CharsetOptions()
    prints = fingerprints(book, [i.char for i in identities], options.dedup_size)
    sim = mirror_similarity(prints, options.dedup_size)
    np.fill_diagonal(sim, -1.0)
    worst = np.unravel_index(int(np.argmax(sim)), sim.shape)
    pair = identities[worst[0]].char + identities[worst[1]].char
    assert sim.max() <= options.dedup_threshold, f"look-alikes kept: {pair!r}"


def test_known_look_alikes_keep_only_the_first_alphabet(identities):
    chars = {i.char for i in identities}
    assert "A" in chars
    assert "\u0391" not in chars  # Greek capital Alpha looks like Latin A
    assert "\u0410" not in chars  # Cyrillic capital A
    assert "o" not in chars or "O" not in chars  # same shape once scaled to the ink box
    assert not {"b", "d"} <= chars  # mirror images: flips make them one identity
    assert not {"p", "q"} <= chars
    assert not ({"(", ")"} <= chars)
    for tiny in ".,\u00b7":  # dots and commas have no shape worth a class
        assert tiny not in chars


def test_tex_encoded_fonts_map_by_glyph_name(book):
    cmr = book.charmaps["cmr10"]
    assert cmr["\u0393"] == 0xA1  # cmr10 draws capital Gamma at TeX position 0xA1
    assert "\u00a1" not in cmr or cmr["\u00a1"] != 0xA1
    assert cmr["A"] == ord("A")


def test_glyph_mask_is_cropped_ink_or_none(book):
    mask = book.glyph_mask("A", "dejavusans", 64)
    assert mask is not None and mask.dtype == np.uint8
    assert mask[0].max() > 0 and mask[-1].max() > 0  # cropped tight to the ink
    assert book.glyph_mask("\u4e00", "cmr10", 64) is None  # not in the font


def test_renderer_is_a_function_of_the_generator(book):
    renderer = Renderer(GlyphCache(book), 32, Nuisance())
    styles = ("dejavusans", "dejavuserif", "stixgeneral")
    ident = Identity("R", "ascii", styles, (ord("R"),) * 3)
    first = renderer.render(ident, np.random.default_rng(5))
    again = renderer.render(ident, np.random.default_rng(5))
    other = renderer.render(ident, np.random.default_rng(6))
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_clean_rendering_shows_the_glyph(book):
    clean = Nuisance(
        rotation_deg=0.0,
        shear=0.0,
        shift=0.0,
        bold_p=0.0,
        thin_p=0.0,
        occlusion_p=0.0,
        clutter_p=0.0,
        texture_p=0.0,
        blur_p=0.0,
        noise_sigma=(0.0, 0.0),
        min_contrast=0.6,
        invert_p=0.0,
    )
    ident = Identity("H", "ascii", ("dejavusans",), (ord("H"),))
    image = Renderer(GlyphCache(book), 32, clean).render(ident, np.random.default_rng(0))
    grey = image.astype(float).mean(axis=2)
    # Two clearly separated tones: background and ink, with the ink a minority.
    lo, hi = np.percentile(grey, 5), np.percentile(grey, 95)
    assert hi - lo > 0.4 * 255
    background = np.median(grey)
    ink = np.abs(grey - background) > 0.3 * 255
    assert 0.05 < ink.mean() < 0.6


@pytest.mark.parametrize(
    ("field", "value"),
    [("occlusion_p", 1.5), ("scale", (0.9, 0.5)), ("min_contrast", 0.95), ("noise_sigma", (-1, 2))],
)
def test_nuisance_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Nuisance(**{field: value})


def test_charset_options_reject_bad_values():
    with pytest.raises(ValueError, match="min_styles"):
        CharsetOptions(min_styles=0)
    with pytest.raises(ValueError, match="dedup_threshold"):
        CharsetOptions(dedup_threshold=1.5)


def test_pairs_follow_the_lfw_fold_layout():
    identities, per = 40, 5
    layout = make_pairs(identities, per, 200, np.random.default_rng(0))
    assert len(layout) == 200
    per_fold = 200 // NUM_FOLDS
    owner_left, owner_right = layout.left // per, layout.right // per
    seen: set[tuple[int, int]] = set()
    fold_members = []
    for fold in range(NUM_FOLDS):
        rows = slice(fold * per_fold, (fold + 1) * per_fold)
        assert (layout.fold[rows] == fold).all()
        flags = layout.issame[rows]
        assert flags[: per_fold // 2].all() and not flags[per_fold // 2 :].any()
        same = owner_left[rows] == owner_right[rows]
        np.testing.assert_array_equal(same, flags)
        members = set(owner_left[rows]) | set(owner_right[rows])
        fold_members.append(members)
        for a, b in zip(layout.left[rows], layout.right[rows]):
            assert a != b
            key = (min(a, b), max(a, b))
            assert key not in seen  # every pair is distinct
            seen.add(key)
    for i in range(NUM_FOLDS):
        for j in range(i + 1, NUM_FOLDS):
            assert not fold_members[i] & fold_members[j]  # identity-disjoint folds


def test_pairs_are_deterministic_for_a_generator_seed():
    a = make_pairs(30, 4, 120, np.random.default_rng(1))
    b = make_pairs(30, 4, 120, np.random.default_rng(1))
    np.testing.assert_array_equal(a.left, b.left)
    np.testing.assert_array_equal(a.right, b.right)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((40, 5, 110), "num_pairs"),
        ((40, 5, 0), "num_pairs"),
        ((19, 5, 60), "test_identities"),
        ((40, 1, 60), "test_samples_per_identity"),
        ((20, 2, 400), "test_samples_per_identity"),
    ],
)
def test_impossible_pair_requests_name_the_parameter(args, name):
    with pytest.raises(ValueError, match=name):
        check_pair_parameters(*args)
