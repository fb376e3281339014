import os

import numpy as np
import pytest
import torch

from sphereface2.data.decode import encode_jpeg
from sphereface2.data.pairs import (
    PairImageDataset,
    PairList,
    PairListError,
    check_images_exist,
    read_lfw_pairs,
    read_pair_list,
)


def _write(path, text):
    path.write_text(text)
    return path


# --- OpenSphere pair lists --------------------------------------------------------------


def test_read_pair_list_resolves_paths_relative_to_list_folder(tmp_path):
    lst = _write(tmp_path / "pairs.txt", "1 a/x.jpg a/y.jpg\n\n0 a/x.jpg b/z.jpg\n")
    pairs = read_pair_list(lst)
    assert len(pairs) == 2
    assert pairs.paths0 == [str(tmp_path / "a/x.jpg")] * 2
    assert pairs.paths1 == [str(tmp_path / "a/y.jpg"), str(tmp_path / "b/z.jpg")]
    assert pairs.issame.dtype == bool
    assert pairs.issame.tolist() == [True, False]
    assert pairs.line_numbers.tolist() == [1, 3]  # the blank line is skipped, not renumbered
    assert pairs.source == str(lst)
    assert pairs.folds is None


def test_read_pair_list_explicit_root_and_absolute_paths(tmp_path):
    lst = _write(tmp_path / "pairs.txt", f"1 x.jpg {tmp_path}/abs.jpg\n")
    pairs = read_pair_list(lst, root="/data/imgs")
    assert pairs.paths0 == ["/data/imgs/x.jpg"]
    assert pairs.paths1 == [f"{tmp_path}/abs.jpg"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 a.jpg b.jpg\n1 a.jpg\n", ":2: expected 'label path0 path1' (3 fields), got 2"),
        ("1 a.jpg b.jpg\n0 a.jpg b.jpg c.jpg\n", ":2: expected 'label path0 path1'"),
        ("2 a.jpg b.jpg\n", ":1: label must be 0 or 1, got '2'"),
        ("yes a.jpg b.jpg\n", ":1: label must be 0 or 1"),
        ("\n\n", "no pairs found"),
    ],
)
def test_read_pair_list_errors_name_file_and_line(tmp_path, text, message):
    lst = _write(tmp_path / "bad_pairs.txt", text)
    with pytest.raises(PairListError, match="bad_pairs.txt") as err:
        read_pair_list(lst)
    assert message in str(err.value)


def test_unique_paths_and_indices_embed_each_image_once():
    pairs = PairList(
        paths0=["a", "b", "a", "c"],
        paths1=["b", "d", "c", "a"],
        issame=np.array([1, 0, 1, 0]),
        source="mem",
    )
    unique = pairs.unique_paths()
    assert unique == ["a", "b", "c", "d"]
    idx0, idx1 = pairs.pair_indices()
    assert [unique[i] for i in idx0] == pairs.paths0
    assert [unique[i] for i in idx1] == pairs.paths1
    # Returned arrays are copies: a caller cannot corrupt the cached index.
    idx0[:] = 99
    assert pairs.pair_indices()[0].tolist() == [0, 1, 0, 2]


def test_pair_list_rejects_inconsistent_lengths():
    with pytest.raises(ValueError, match="one entry per pair"):
        PairList(["a"], ["b", "c"], np.array([True]), source="mem")
    with pytest.raises(ValueError, match="line_numbers"):
        PairList(["a"], ["b"], np.array([True]), source="mem", line_numbers=np.array([1, 2]))


# --- LFW pairs.txt ----------------------------------------------------------------------


def _lfw_text(folds=2, per_class=2):
    lines = [f"{folds}\t{per_class}"]
    for fold in range(folds):
        for i in range(per_class):
            lines.append(f"Person_{fold}_{i}\t{i + 1}\t{i + 12}")
        for i in range(per_class):
            lines.append(f"Anne_{fold}\t{i + 1}\tBob_{fold}_{i}\t{i + 103}")
    return "\n".join(lines) + "\n"


def test_read_lfw_pairs_paths_flags_folds_in_file_order(tmp_path):
    txt = _write(tmp_path / "pairs.txt", _lfw_text(folds=2, per_class=2))
    pairs = read_lfw_pairs(txt, "/lfw")
    assert len(pairs) == 8
    assert pairs.issame.tolist() == [True, True, False, False] * 2
    assert pairs.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pairs.paths0[0] == "/lfw/Person_0_0/Person_0_0_0001.jpg"
    assert pairs.paths1[0] == "/lfw/Person_0_0/Person_0_0_0012.jpg"
    assert pairs.paths0[3] == "/lfw/Anne_0/Anne_0_0002.jpg"
    assert pairs.paths1[3] == "/lfw/Bob_0_1/Bob_0_1_0104.jpg"
    assert pairs.paths1[7] == "/lfw/Bob_1_1/Bob_1_1_0104.jpg"
    assert pairs.line_numbers.tolist() == list(range(2, 10))


def test_read_lfw_pairs_view1_single_count_header_and_ext(tmp_path):
    txt = _write(tmp_path / "pairsDevTest.txt", "1\nAl 1 2\nAl 3 Bo 4\n")
    pairs = read_lfw_pairs(txt, "root", ext="png")
    assert pairs.issame.tolist() == [True, False]
    assert pairs.paths1 == ["root/Al/Al_0002.png", "root/Bo/Bo_0004.png"]
    assert pairs.folds.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("10 300 7\n", ":1: header must be 'folds pairs_per_class'"),
        ("ten 300\n", ":1: fold count must be an integer, got 'ten'"),
        ("1 2\nA 1 2\nA 1 3\nA 1 B 2\n", "= 4 pair lines, found 3"),
        ("1 1\nA 1 B 2\nA 1 2\n", ":2: fold 1 line 1 should be a matched pair"),
        ("1 1\nA 1 2\nA 1 2\n", ":3: fold 1 line 2 should be a mismatched pair"),
        ("1 1\nA 1 x\nA 1 B 2\n", ":2: image number must be an integer, got 'x'"),
        ("1 1\nA 1 2\nA 0 B 2\n", ":3: image number must be >= 1, got 0"),
    ],
)
def test_read_lfw_pairs_errors(tmp_path, text, message):
    txt = _write(tmp_path / "pairs.txt", text)
    with pytest.raises(PairListError, match="pairs.txt") as err:
        read_lfw_pairs(txt, "root")
    assert message in str(err.value)


def test_non_utf8_pair_files_name_file_and_line(tmp_path):
    lst = tmp_path / "pairs.txt"
    lst.write_bytes("1 a.jpg b.jpg\n0 a.jpg J\u00f6rg.jpg\n".encode("latin-1"))
    with pytest.raises(PairListError, match=r"pairs\.txt:2: not UTF-8 text"):
        read_pair_list(lst)
    lfw = tmp_path / "lfw.txt"
    lfw.write_bytes("1 1\nA 1 2\nA 1 J\u00f6rg 2\n".encode("latin-1"))
    with pytest.raises(PairListError, match=r"lfw\.txt:3: not UTF-8 text"):
        read_lfw_pairs(lfw, "root")


# --- existence check and dataset --------------------------------------------------------


def _save_jpeg(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(np.full((8, 6, 3), value, np.uint8), quality=100))


def test_check_images_exist_names_file_line_and_missing(tmp_path):
    _save_jpeg(tmp_path / "a.jpg", 10)
    lst = _write(
        tmp_path / "pairs.txt",
        "1 a.jpg a.jpg\n0 a.jpg gone1.jpg\n0 gone2.jpg gone1.jpg\n1 gone3.jpg a.jpg\n",
    )
    pairs = read_pair_list(lst)
    with pytest.raises(FileNotFoundError) as err:
        check_images_exist(pairs, show=2)
    message = str(err.value)
    assert f"{lst}:2:" in message  # first pair with a missing image is on line 2
    assert "3 of 4 images" in message
    assert "gone1.jpg" in message and "gone2.jpg" in message
    assert "gone3.jpg" not in message and "and 1 more" in message


def test_check_images_exist_passes_when_all_present(tmp_path):
    _save_jpeg(tmp_path / "a.jpg", 10)
    _save_jpeg(tmp_path / "b.jpg", 20)
    check_images_exist(read_pair_list(_write(tmp_path / "p.txt", "0 a.jpg b.jpg\n")))


def test_pair_image_dataset_yields_each_unique_image_once(tmp_path):
    for name, value in [("a", 0), ("b", 255), ("c", 128)]:
        _save_jpeg(tmp_path / "img" / f"{name}.jpg", value)
    lst = _write(tmp_path / "pairs.txt", "1 img/a.jpg img/b.jpg\n0 img/b.jpg img/c.jpg\n")
    pairs = read_pair_list(lst)
    dataset = PairImageDataset(pairs)
    assert len(dataset) == 3
    image, index = dataset[1]
    assert index == 1
    assert image.shape == (3, 8, 6) and image.dtype == torch.float32
    assert torch.allclose(image, torch.ones_like(image))  # 255 -> +1 under the default transform
    assert torch.allclose(dataset[0][0], -torch.ones(3, 8, 6))

    seen = PairImageDataset(pairs, transform=lambda rgb: torch.tensor(int(rgb[0, 0, 0])))
    assert [int(seen[i][0]) for i in range(3)] == [0, 255, 128]


def test_pair_image_dataset_missing_image_names_path(tmp_path):
    lst = _write(tmp_path / "pairs.txt", "1 nope.jpg nope2.jpg\n")
    dataset = PairImageDataset(read_pair_list(lst))
    with pytest.raises(ValueError, match=os.path.join(str(tmp_path), "nope.jpg")):
        dataset[0]
