"""verification_sets: names, dispatch by file kind, and errors naming the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2.evaluate.verification_sets import display_name, open_pair_set  # noqa: E402


@pytest.mark.parametrize(
    ("stem", "name"),
    [
        ("lfw", "LFW"),
        ("agedb_30", "AgeDB-30"),
        ("AgeDB-30", "AgeDB-30"),
        ("calfw", "CALFW"),
        ("cplfw", "CPLFW"),
        ("cfp_fp", "CFP-FP"),
        ("lfw_ann", "LFW"),
        ("pairs_cplfw", "CPLFW"),
        ("my_set", "my_set"),
    ],
)
def test_display_names(stem, name):
    assert display_name(stem) == name


def test_bin_set(tmp_path):
    issame = tiny.write_tiny_bin(tmp_path / "agedb_30.bin", pairs=6)
    s = open_pair_set(tmp_path / "agedb_30.bin", input_size=(tiny.SIZE, tiny.SIZE))
    assert (s.name, s.kind, s.num_pairs, s.num_images) == ("AgeDB-30", "bin", 6, 12)
    np.testing.assert_array_equal(s.idx0, [0, 2, 4, 6, 8, 10])
    np.testing.assert_array_equal(s.idx1, [1, 3, 5, 7, 9, 11])
    np.testing.assert_array_equal(s.issame, issame)
    assert tuple(s.dataset[0][0].shape) == (3, tiny.SIZE, tiny.SIZE)
    assert open_pair_set(tmp_path / "agedb_30.bin", name="mine").name == "mine"


def _lfw(tmp_path: Path) -> Path:
    root = tmp_path / "lfw"
    rng = np.random.default_rng(0)
    from PIL import Image

    for person in ("Ann", "Bob"):
        (root / person).mkdir(parents=True)
        for k in (1, 2):
            Image.fromarray(tiny.face(rng, len(person))).save(
                root / person / f"{person}_{k:04d}.jpg"
            )
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 2\nAnn 1 2\nBob 1 2\nAnn 1 Bob 1\nAnn 2 Bob 2\n")
    return pairs


def test_lfw_pairs_need_the_image_root(tmp_path):
    pairs = _lfw(tmp_path)
    with pytest.raises(ValueError, match=r"pairs\.txt: looks like an LFW pairs\.txt.*--lfw-root"):
        open_pair_set(pairs)
    s = open_pair_set(pairs, lfw_root=tmp_path / "lfw")
    assert (s.name, s.kind, s.num_pairs, s.num_images) == ("LFW", "lfw", 4, 4)
    np.testing.assert_array_equal(s.issame, [True, True, False, False])
    with pytest.raises(FileNotFoundError, match="LFW image folder not found"):
        open_pair_set(pairs, lfw_root=tmp_path / "nowhere")


def test_pair_list_relative_to_its_folder_and_missing_images(tmp_path):
    rows = tiny.write_image_folder(tmp_path / "val", identities=2, per_identity=2)
    paths = [p for p, _ in rows]
    listing = tiny.write_pair_list(
        tmp_path / "val" / "cplfw_ann.txt", [(1, paths[0], paths[1]), (0, paths[1], paths[2])]
    )
    s = open_pair_set(listing)
    assert (s.name, s.kind, s.num_pairs, s.num_images) == ("CPLFW", "pair-list", 2, 3)
    broken = tiny.write_pair_list(tmp_path / "val" / "broken.txt", [(1, paths[0], "gone.png")])
    with pytest.raises(FileNotFoundError, match=r"broken\.txt:1: 1 of 2 images .* missing"):
        open_pair_set(broken)


def test_missing_data_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"verification data not found: .*lfw\.bin"):
        open_pair_set(tmp_path / "lfw.bin")
    with pytest.raises(ValueError, match="is a folder; expected a .bin file"):
        open_pair_set(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 a.png\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected 'label path0 path1'"):
        open_pair_set(bad)


def test_pair_set_checks_its_indices():
    from sphereface2.evaluate.verification_sets import PairSet

    images = [0, 1, 2]
    with pytest.raises(ValueError, match=r"src: a pair refers to an image outside 0\.\.2"):
        PairSet("x", images, [0, 3], [1, 2], [True, False], "src", "bin")
    with pytest.raises(ValueError, match="one entry per pair"):
        PairSet("x", images, [0], [1, 2], [True, False], "src", "bin")
