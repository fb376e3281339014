"""Build the demo dataset: pick and split identities, render, write the files.

Output folder:

* ``train.rec``, ``train.idx``, ``property`` -- the training identities in InsightFace's
  MS1M RecordIO layout;
* ``test.bin`` -- verification pairs over the disjoint test identities, laid out like
  LFW (10 folds in file order, each its genuine pairs then its impostor pairs);
* ``test_pairs.txt`` -- the same pairs in words (fold, flag, characters, sample indices);
* ``meta.json`` -- parameters, counts, the characters of each split and the styles used.
  It is written last, so a folder without it is an unfinished build.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import PIL
import PIL.features

from sphereface2.data.bin_format import write_bin
from sphereface2.data.packing import write_recordio

from .charset import STYLES, CharsetOptions, Identity, select_identities
from .generate import render_split_jpeg
from .pairs import NUM_FOLDS, PairLayout, check_pair_parameters, make_pairs
from .render import Nuisance

#: Bumped whenever the same parameters would give different bytes.
GENERATOR_VERSION = 1

FILES = {
    "train_rec": "train.rec",
    "train_idx": "train.idx",
    "property": "property",
    "test_bin": "test.bin",
    "test_pairs": "test_pairs.txt",
    "meta": "meta.json",
}


@dataclass(frozen=True)
class DemoParams:
    """Everything that determines the dataset's bytes (``workers`` does not).

    Default sizes: 200 training identities x 96 samples rather than many identities with
    few samples, because in a few CPU minutes each class proxy must see enough positives
    for training to take off; 300 test identities x 10 samples give 6,000 distinct pairs
    in 10 identity-disjoint folds of 30 identities. 32x32 images: the backbones need a
    multiple of 16 and 32 keeps a width-0.25 SFNet-20 at a few iterations per second on
    two cores.
    """

    seed: int = 0
    image_size: int = 32
    train_identities: int = 200
    test_identities: int = 300
    samples_per_identity: int = 96
    test_samples_per_identity: int = 10
    num_pairs: int = 6000
    jpeg_quality: int = 95
    nuisance: Nuisance = field(default_factory=Nuisance)
    charset: CharsetOptions = field(default_factory=CharsetOptions)

    def __post_init__(self) -> None:
        # Plain mappings (from YAML or JSON) become the option objects; unknown keys fail
        # there with the key's name.
        if isinstance(self.nuisance, Mapping):
            object.__setattr__(self, "nuisance", _from_mapping(Nuisance, self.nuisance))
        if isinstance(self.charset, Mapping):
            object.__setattr__(self, "charset", _from_mapping(CharsetOptions, self.charset))
        if self.image_size < 16 or self.image_size % 16:
            raise ValueError(
                f"image_size must be a positive multiple of 16 (the backbones' final map is "
                f"input/16), got {self.image_size}"
            )
        for name in ("train_identities", "samples_per_identity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        check_pair_parameters(self.test_identities, self.test_samples_per_identity, self.num_pairs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters, as stored under ``params`` in meta.json."""
        out = {k: v for k, v in asdict(self).items() if k not in ("nuisance", "charset")}
        out["nuisance"] = self.nuisance.to_dict()
        out["charset"] = asdict(self.charset)
        out["generator_version"] = GENERATOR_VERSION
        return out


def _from_mapping(kind: type, values: Mapping[str, Any]) -> Any:
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(
            f"unknown {kind.__name__} option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(known))}"
        )
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class DemoDatasetInfo:
    """Paths and counts of a built demo dataset."""

    root: Path
    train_rec: Path
    train_idx: Path
    property_file: Path
    test_bin: Path
    test_pairs: Path
    meta_json: Path
    num_classes: int
    num_train_images: int
    num_test_identities: int
    num_test_images: int
    num_pairs: int
    image_size: int
    built: bool
    seconds: float = 0.0


def _paths(root: Path) -> dict[str, Path]:
    return {key: root / name for key, name in FILES.items()}


def _info(root: Path, meta: dict[str, Any], built: bool, seconds: float) -> DemoDatasetInfo:
    paths = _paths(root)
    counts = meta["counts"]
    return DemoDatasetInfo(
        root=root,
        train_rec=paths["train_rec"],
        train_idx=paths["train_idx"],
        property_file=paths["property"],
        test_bin=paths["test_bin"],
        test_pairs=paths["test_pairs"],
        meta_json=paths["meta"],
        num_classes=counts["train_identities"],
        num_train_images=counts["train_images"],
        num_test_identities=counts["test_identities"],
        num_test_images=counts["test_images"],
        num_pairs=counts["pairs"],
        image_size=meta["params"]["image_size"],
        built=built,
        seconds=seconds,
    )


def split_identities(
    params: DemoParams, available: Sequence[Identity]
) -> tuple[list[Identity], list[Identity]]:
    """(train, test) identities: the first ``train + test`` of the charset, split by seed.

    The charset lists identities with the most styles first, so the build uses the most
    varied characters; each split is sorted by code point.
    """
    need = params.train_identities + params.test_identities
    if need > len(available):
        raise ValueError(
            f"train_identities + test_identities = {params.train_identities} + "
            f"{params.test_identities} = {need} exceeds the {len(available)} identities the "
            f"charset provides (min_styles={params.charset.min_styles}, dedup_threshold="
            f"{params.charset.dedup_threshold}); lower train_identities or test_identities"
        )
    order = np.random.default_rng([params.seed, 0]).permutation(need)
    test = sorted((available[i] for i in order[: params.test_identities]), key=_codepoint)
    train = sorted((available[i] for i in order[params.test_identities :]), key=_codepoint)
    return train, test


def _codepoint(identity: Identity) -> int:
    return ord(identity.char)


def _split_meta(identities: Sequence[Identity]) -> dict[str, Any]:
    return {
        "characters": "".join(i.char for i in identities),
        "codepoints": [i.codepoint for i in identities],
        "scripts": dict(sorted(Counter(i.script for i in identities).items())),
        "styles_per_identity": [len(i.styles) for i in identities],
    }


def _write_pairs_text(path: Path, pairs: PairLayout, test: Sequence[Identity], per: int) -> None:
    lines = [
        "# fold issame left_codepoint left_sample right_codepoint right_sample",
        f"# {len(pairs)} pairs in {NUM_FOLDS} folds; in test.bin pair i is images 2i and 2i+1",
    ]
    for fold, same, left, right in zip(pairs.fold, pairs.issame, pairs.left, pairs.right):
        a, b = test[left // per], test[right // per]
        lines.append(f"{fold} {int(same)} {a.codepoint} {left % per} {b.codepoint} {right % per}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def build_demo_dataset(
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
    **params: Any,
) -> DemoDatasetInfo:
    """Render the demo dataset into ``out_dir`` (created if needed), replacing a previous one.

    Keyword parameters are the fields of :class:`DemoParams` (``image_size``,
    ``train_identities``, ``test_identities``, ``samples_per_identity``,
    ``test_samples_per_identity``, ``num_pairs``, ``jpeg_quality``, ``nuisance``,
    ``charset``). The same parameters give the same bytes whatever ``workers`` is.
    ``log`` receives a line per stage.
    """
    config = _make_params(seed, params)
    say = log or (lambda _line: None)
    workers = _default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    start = time.perf_counter()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    paths = _paths(root)
    paths["meta"].unlink(missing_ok=True)  # the folder is unfinished until meta.json returns

    train, test = split_identities(config, select_identities(config.charset))
    say(f"demo dataset: {len(train)} training and {len(test)} test identities -> {root}")
    common = {
        "seed": config.seed,
        "size": config.image_size,
        "nuisance": config.nuisance,
        "quality": config.jpeg_quality,
        "workers": workers,
    }
    per_train = config.samples_per_identity
    say(f"rendering {len(train) * per_train} training images ({workers} worker(s))")
    train_jpegs = render_split_jpeg(train, per_train, split="train", **common)
    labels = np.repeat(np.arange(len(train)), per_train)
    write_recordio(root / "train", zip(train_jpegs, labels.tolist()), quality=config.jpeg_quality)
    del train_jpegs

    per_test = config.test_samples_per_identity
    say(f"rendering {len(test) * per_test} test images, {config.num_pairs} pairs")
    test_jpegs = render_split_jpeg(test, per_test, split="test", **common)
    pairs = make_pairs(len(test), per_test, config.num_pairs, np.random.default_rng([seed, 3]))
    images = [test_jpegs[i] for pair in zip(pairs.left, pairs.right) for i in pair]
    write_bin(paths["test_bin"], images, pairs.issame.tolist(), variant="numpy")
    _write_pairs_text(paths["test_pairs"], pairs, test, per_test)

    in_use = {name for ident in (*train, *test) for name in ident.styles}
    used = [s for s in STYLES if s.name in in_use]
    meta = {
        "generator": "sphereface2.data.demo_glyphs",
        "generator_version": GENERATOR_VERSION,
        "params": config.to_dict(),
        "environment": {
            "matplotlib": matplotlib.__version__,
            "pillow": PIL.__version__,
            "freetype": PIL.features.version("freetype2"),
        },
        "counts": {
            "train_identities": len(train),
            "train_images": len(train) * per_train,
            "test_identities": len(test),
            "test_images": len(test) * per_test,
            "pairs": len(pairs),
            "genuine_pairs": int(pairs.issame.sum()),
            "folds": NUM_FOLDS,
        },
        "files": dict(FILES),
        "styles": [s.name for s in used],
        "style_files": {s.name: s.filename for s in used},
        "train": _split_meta(train),
        "test": _split_meta(test),
    }
    tmp = paths["meta"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, paths["meta"])
    seconds = time.perf_counter() - start
    say(f"demo dataset written in {seconds:.1f} s")
    return _info(root, meta, built=True, seconds=seconds)


def _make_params(seed: int, params: dict[str, Any]) -> DemoParams:
    known = {f for f in DemoParams.__dataclass_fields__ if f != "seed"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(
            f"unknown demo dataset parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(known))}, workers, log"
        )
    return DemoParams(seed=seed, **params)


def read_meta(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's meta.json, or None when it is missing or unreadable."""
    path = Path(out_dir) / FILES["meta"]
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def ensure_demo_dataset(
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
    **params: Any,
) -> DemoDatasetInfo:
    """Return the demo dataset in ``out_dir``, building it only when needed.

    It is (re)built when meta.json is missing or unreadable, when its parameters or
    generator version differ from the requested ones, or when a data file is missing.
    """
    config = _make_params(seed, params)
    root = Path(out_dir)
    meta = read_meta(root)
    files_present = all(p.is_file() for p in _paths(root).values())
    if meta is not None and files_present and meta.get("params") == config.to_dict():
        return _info(root, meta, built=False, seconds=0.0)
    if log is not None:
        log(f"{root}: no up-to-date demo dataset ({_stale_reason(meta, files_present)}); building")
    return build_demo_dataset(root, seed, workers=workers, log=log, **params)


def _stale_reason(meta: dict[str, Any] | None, files_present: bool) -> str:
    if meta is None:
        return "meta.json missing or unreadable"
    if not files_present:
        return "a data file is missing"
    return "parameters differ"
