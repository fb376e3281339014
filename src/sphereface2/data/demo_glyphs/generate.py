"""Render every sample of a split, optionally in several processes, deterministically.

Each sample's generator is seeded from (seed, split, code point, sample index), so an
image does not depend on the number of workers, on the order work is handed out, or on
which other identities are in the build.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sphereface2.data.decode import encode_jpeg

from .charset import FontBook, Identity
from .render import GlyphCache, Nuisance, Renderer

#: Seed-sequence tags that keep the two splits' random streams apart.
SPLIT_TAGS = {"train": 1, "test": 2}


@dataclass(frozen=True)
class _Job:
    seed: int
    split: str
    size: int
    per_identity: int
    nuisance: Nuisance
    identities: tuple[Identity, ...]
    jpeg_quality: int | None


def sample_rng(seed: int, split: str, char: str, index: int) -> np.random.Generator:
    """The generator of one sample: a pure function of its seed, split, character and index."""
    return np.random.default_rng([seed, SPLIT_TAGS[split], ord(char), index])


def _render_job(job: _Job) -> np.ndarray | list[bytes]:
    # Identities carry their code points, so the fonts' character maps are never read here.
    renderer = Renderer(GlyphCache(FontBook()), job.size, job.nuisance)
    out = np.empty((len(job.identities), job.per_identity, job.size, job.size, 3), np.uint8)
    for i, ident in enumerate(job.identities):
        for k in range(job.per_identity):
            rng = sample_rng(job.seed, job.split, ident.char, k)
            out[i, k] = renderer.render(ident, rng)
    if job.jpeg_quality is None:
        return out
    # Encoding in the worker keeps the parent's share of the work small.
    flat = out.reshape(-1, job.size, job.size, 3)
    return [encode_jpeg(image, job.jpeg_quality) for image in flat]


def render_split(
    identities: Sequence[Identity],
    per_identity: int,
    *,
    seed: int,
    split: str,
    size: int,
    nuisance: Nuisance,
    workers: int = 1,
) -> np.ndarray:
    """All samples of ``identities``: uint8 array (num_identities, per_identity, size, size, 3)."""
    parts = _run(identities, per_identity, seed, split, size, nuisance, workers, None)
    if not parts:
        return np.empty((0, per_identity, size, size, 3), np.uint8)
    return np.concatenate(parts)


def render_split_jpeg(
    identities: Sequence[Identity],
    per_identity: int,
    *,
    seed: int,
    split: str,
    size: int,
    nuisance: Nuisance,
    quality: int,
    workers: int = 1,
) -> list[bytes]:
    """The same samples as :func:`render_split`, JPEG-encoded, identity-major order."""
    parts = _run(identities, per_identity, seed, split, size, nuisance, workers, quality)
    return [data for part in parts for data in part]


def _run(
    identities: Sequence[Identity],
    per_identity: int,
    seed: int,
    split: str,
    size: int,
    nuisance: Nuisance,
    workers: int,
    quality: int | None,
) -> list:
    if split not in SPLIT_TAGS:
        raise ValueError(f"split must be one of {sorted(SPLIT_TAGS)}, got {split!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    identities = tuple(identities)
    if not identities:
        return []
    # A few chunks per worker balance the load; each chunk opens the fonts once.
    chunks = min(len(identities), 1 if workers == 1 else 4 * workers)
    bounds = np.linspace(0, len(identities), chunks + 1).round().astype(int)
    jobs = [
        _Job(seed, split, size, per_identity, nuisance, identities[lo:hi], quality)
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    if workers == 1:
        return [_render_job(job) for job in jobs]
    with _context().Pool(min(workers, len(jobs))) as pool:
        return pool.map(_render_job, jobs)


def _context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; they only touch numpy and Pillow, so no lock
    # held by another thread of the parent (e.g. torch's pool) is ever needed there.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")
