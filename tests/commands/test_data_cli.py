"""``sphereface2 data pack|pack-pairs|inspect`` end to end through sphereface2.cli.main."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from sphereface2.cli import main
from sphereface2.data.bin_format import read_bin, write_bin
from sphereface2.data.decode import encode_jpeg
from sphereface2.data.recordio_dataset import RecordIODataset


def _faces(root) -> None:
    rng = np.random.default_rng(0)
    for identity, count in (("ann", 2), ("ben", 3)):
        os.makedirs(root / identity)
        for i in range(count):
            rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            (root / identity / f"{i}.jpg").write_bytes(encode_jpeg(rgb))


def test_pack_then_inspect(tmp_path, capsys):
    _faces(tmp_path / "faces")
    assert main(["data", "pack", str(tmp_path / "faces"), str(tmp_path / "out/train")]) == 0
    out = capsys.readouterr().out
    assert "5 images of 2 identities (5 JPEGs copied as they are" in out
    ds = RecordIODataset(tmp_path / "out")
    assert ds.labels.tolist() == [0, 0, 1, 1, 1]

    assert main(["data", "inspect", str(tmp_path / "out"), "--samples", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 5 and info["num_classes"] == 2 and info["checked"] == 2

    assert main(["data", "inspect", str(tmp_path / "out/train.rec")]) == 0
    assert "all 5 sampled images decode" in capsys.readouterr().out


def test_pack_pairs(tmp_path, capsys):
    _faces(tmp_path / "faces")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 ann/0.jpg ann/1.jpg\n0 ann/0.jpg ben/2.jpg\n")
    out_bin = tmp_path / "val.bin"
    code = main(["data", "pack-pairs", str(pairs), str(out_bin), "--root", str(tmp_path / "faces")])
    assert code == 0
    assert "2 pairs (1 genuine, 1 impostor) from 3 images" in capsys.readouterr().out
    content = read_bin(out_bin)
    assert content.issame.tolist() == [True, False]
    assert content.images[3] == (tmp_path / "faces/ben/2.jpg").read_bytes()


def test_inspect_failure_exit_status(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/broken.jpg").write_bytes(b"\xff\xd8\xff nothing")
    assert main(["data", "inspect", str(tmp_path)]) == 1
    assert "FAILED to decode 1 of 1" in capsys.readouterr().out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "pack", str(tmp_path / "nope"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("sphereface2 data: error: training set not found:") and err.count("\n") == 1
    )
    (tmp_path / "evil.bin").write_bytes(b"cos\nsystem\n(S'true'\ntR.")  # protocol 0
    assert main(["data", "inspect", str(tmp_path / "evil.bin")]) == 1
    assert "refusing to load global 'os.system'" in capsys.readouterr().err


def test_help_texts(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    out = capsys.readouterr().out
    for command in ("pack", "pack-pairs", "inspect"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["data", "pack", "--help"])
    assert "copied byte for byte" in capsys.readouterr().out
    assert main(["data"]) == 2  # no sub-command: prints the family's help


def test_pack_skip_corrupt_overwrite_and_refusal(tmp_path, capsys):
    _faces(tmp_path / "faces")
    jpeg = (tmp_path / "faces/ben/1.jpg").read_bytes()
    (tmp_path / "faces/ben/1.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    out = str(tmp_path / "out/train")
    assert main(["data", "pack", str(tmp_path / "faces"), out]) == 1
    err = capsys.readouterr().err
    assert "ben/1.jpg: cannot decode image" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()

    assert main(["data", "pack", str(tmp_path / "faces"), out, "--skip-corrupt"]) == 0
    captured = capsys.readouterr()
    assert "4 images of 2 identities" in captured.out
    assert "skipped 1 images that failed to decode" in captured.out
    assert "skipped: " in captured.err and "ben/1.jpg" in captured.err

    assert main(["data", "pack", str(tmp_path / "faces"), out, "--skip-corrupt"]) == 1
    err = capsys.readouterr().err
    assert "already holds a training set" in err and "--overwrite" in err
    (tmp_path / "faces/ben/1.jpg").write_bytes(jpeg)
    assert main(["data", "pack", str(tmp_path / "faces"), out, "--overwrite"]) == 0
    assert len(RecordIODataset(tmp_path / "out")) == 5


def test_inspect_piped_into_head_is_quiet(tmp_path):
    # Far more output than a pipe buffer holds, so the writer is still writing when head
    # exits: without care Python prints a BrokenPipeError traceback.
    write_bin(tmp_path / "val.bin", [b"not an image %d" % i for i in range(4000)], [False] * 2000)
    command = (
        f"{shlex.quote(sys.executable)} -m sphereface2 data inspect "
        f"{shlex.quote(str(tmp_path / 'val.bin'))} --samples 4000 2> {tmp_path / 'err.txt'} "
        f"| head -1"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.stdout == f"{tmp_path / 'val.bin'}: bin\n"
    assert (tmp_path / "err.txt").read_text() == ""
