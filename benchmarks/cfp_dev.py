"""The cfp_dev real-face set, prepared for training and evaluation with the project's CLI.

cfp_dev (../shared/data/cfp_dev, see its README) has 350 training identities and 150
disjoint test identities, 10 frontal + 4 profile photos each, with FF and FP pair lists of
the test identities. Its rules: tune on a validation split carved from the *training*
identities, report the test pairs. This module writes, into a scratch folder:

    full.txt / full/        all 350 training identities ('path label' list, packed RecordIO)
    split.txt / split/      the 300 training identities left after the validation hold-out
    val_ff.txt, val_fp.txt  pairs of the 50 held-out identities, in the test lists' layout
    val_ff.bin, val_fp.bin  the same packed as validation .bin files (trainer validation)
    val_images.txt          every image of the validation pairs, once ('path 0' lines)
    test_images.txt         every image of the FF/FP test pairs, once

All packing goes through ``sphereface2 data pack`` / ``data pack-pairs``; nothing from
cfp_dev is ever written inside the repository (the scratch folder is ignored by git).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CFP = REPO.parent / "shared" / "data" / "cfp_dev"

#: Held-out training identities for the validation split, and pairs per identity.
VAL_IDENTITIES = 50
VAL_FOLDS = 10
VAL_GENUINE_PER_ID = 20
SPLIT_SEED = 0


@dataclass(frozen=True)
class PreparedData:
    """Paths of everything :func:`prepare` writes."""

    root: Path  # cfp_dev itself (image paths in the lists are relative to it)
    full: Path  # RecordIO folder of all 350 training identities
    split: Path  # RecordIO folder of the 300 non-validation identities
    val_ff: Path
    val_fp: Path
    val_ff_bin: Path
    val_fp_bin: Path
    val_images: Path
    test_images: Path
    test_ff: Path
    test_fp: Path


def find_cfp(path: str | Path | None = None) -> Path | None:
    """cfp_dev's folder, or None where it is absent (callers skip cleanly)."""
    p = Path(path) if path else DEFAULT_CFP
    ok = (
        (p / "train").is_dir() and (p / "pairs_ff.txt").is_file() and (p / "pairs_fp.txt").is_file()
    )
    return p if ok else None


def identity_images(root: Path, part: str) -> dict[str, list[str]]:
    """``{identity: [relative image paths, sorted]}`` of ``root/part``."""
    out: dict[str, list[str]] = {}
    for folder in sorted(p for p in (root / part).iterdir() if p.is_dir()):
        images = sorted(f"{part}/{folder.name}/{f.name}" for f in folder.glob("*.jpg"))
        if images:
            out[folder.name] = images
    return out


def write_list(path: Path, ids: dict[str, list[str]]) -> None:
    """'path label' lines, labels 0..K-1 in sorted identity order."""
    lines = [f"{image} {label}" for label, name in enumerate(sorted(ids)) for image in ids[name]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def held_out_identities(names: list[str], count: int = VAL_IDENTITIES) -> list[str]:
    """A fixed, seeded choice of validation identities among the training ones."""
    rng = np.random.default_rng(SPLIT_SEED)
    return sorted(rng.choice(sorted(names), size=count, replace=False).tolist())


def _kind(path: str, kind: str) -> bool:
    return Path(path).name.startswith(kind)


def validation_pairs(ids: dict[str, list[str]], profile: bool, seed: int) -> list[str]:
    """Pair lines ('label path0 path1') of the held-out identities in the test lists'
    layout: ten identity-disjoint folds, each its genuine pairs then as many impostors.
    FF pairs two frontal photos; FP a frontal with a profile photo."""
    rng = np.random.default_rng(seed)
    names = sorted(ids)
    folds = np.array_split(np.asarray(names), VAL_FOLDS)
    lines: list[str] = []
    for fold in folds:
        genuine, impostor = [], []
        for name in fold:
            frontal = [p for p in ids[name] if _kind(p, "frontal")]
            other = [p for p in ids[name] if _kind(p, "profile" if profile else "frontal")]
            candidates = [(a, b) for a in frontal for b in other if a < b or profile]
            pick = rng.choice(len(candidates), size=VAL_GENUINE_PER_ID, replace=False)
            genuine += [candidates[i] for i in pick]
        while len(impostor) < len(genuine):
            a, b = rng.choice(fold, size=2, replace=False)
            fa = [p for p in ids[a] if _kind(p, "frontal")]
            ob = [p for p in ids[b] if _kind(p, "profile" if profile else "frontal")]
            impostor.append((fa[rng.integers(len(fa))], ob[rng.integers(len(ob))]))
        lines += [f"1 {a} {b}" for a, b in genuine] + [f"0 {a} {b}" for a, b in impostor]
    return lines


def pair_images(*pair_files: Path) -> list[str]:
    """Every image named by the pair lists, once, in sorted order."""
    seen: set[str] = set()
    for pairs in pair_files:
        for line in pairs.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 3:
                seen.update(parts[1:])
    return sorted(seen)


def _cli(*args: str | Path) -> None:
    cmd = [sys.executable, "-m", "sphereface2", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")


def prepare(root: Path, scratch: Path) -> PreparedData:
    """Write the lists and pack them with the CLI (skipped where already packed)."""
    scratch.mkdir(parents=True, exist_ok=True)
    train = identity_images(root, "train")
    val_names = held_out_identities(list(train))
    val = {n: train[n] for n in val_names}
    kept = {n: v for n, v in train.items() if n not in val}
    data = PreparedData(
        root=root,
        full=scratch / "full",
        split=scratch / "split",
        val_ff=scratch / "val_ff.txt",
        val_fp=scratch / "val_fp.txt",
        val_ff_bin=scratch / "val_ff.bin",
        val_fp_bin=scratch / "val_fp.bin",
        val_images=scratch / "val_images.txt",
        test_images=scratch / "test_images.txt",
        test_ff=root / "pairs_ff.txt",
        test_fp=root / "pairs_fp.txt",
    )
    for ids, folder in ((train, data.full), (kept, data.split)):
        listing = folder.with_suffix(".txt")
        write_list(listing, ids)
        if not (folder / "train.rec").is_file():
            folder.mkdir(exist_ok=True)
            _cli("data", "pack", listing, folder / "train", "--root", root)
    data.val_ff.write_text("\n".join(validation_pairs(val, False, 1)) + "\n", encoding="utf-8")
    data.val_fp.write_text("\n".join(validation_pairs(val, True, 2)) + "\n", encoding="utf-8")
    for pairs, binary in ((data.val_ff, data.val_ff_bin), (data.val_fp, data.val_fp_bin)):
        if not binary.is_file():
            _cli("data", "pack-pairs", pairs, binary, "--root", root)
    for listing, pairs in (
        (data.val_images, (data.val_ff, data.val_fp)),
        (data.test_images, (data.test_ff, data.test_fp)),
    ):
        images = pair_images(*pairs)
        listing.write_text("\n".join(f"{p} 0" for p in images) + "\n", encoding="utf-8")
    return data
