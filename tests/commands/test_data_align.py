import argparse
import json

import numpy as np
import pytest
from PIL import Image

from sphereface2.commands.data_align import add_align_command
from sphereface2.data.alignment import REFERENCE_LANDMARKS_112


def _parser():
    parser = argparse.ArgumentParser(prog="data")
    add_align_command(parser.add_subparsers(dest="data_command"))
    return parser


def _setup(tmp_path, with_missing=False):
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (130, 120, 3), dtype=np.uint8)).save(images / "a.png")
    coords = " ".join(f"{v:.4f}" for v in (REFERENCE_LANDMARKS_112 + 4).ravel())
    lines = [f"a.png {coords}"] + ([f"gone.jpg {coords}"] if with_missing else [])
    landmarks = tmp_path / "lm.txt"
    landmarks.write_text("\n".join(lines) + "\n")
    return images, landmarks, tmp_path / "out"


def test_parser_defaults_and_options():
    args = _parser().parse_args(["align", "I", "L", "O"])
    assert (args.images, args.landmarks, args.out) == ("I", "L", "O")
    assert args.size == [112, 112] and args.quality == 95 and args.report is None
    args = _parser().parse_args(["align", "I", "L", "O", "--size", "112", "96", "--quality", "80"])
    assert args.size == [112, 96] and args.quality == 80


def test_align_command_success(tmp_path, capsys):
    images, landmarks, out = _setup(tmp_path)
    args = _parser().parse_args(
        ["align", str(images), str(landmarks), str(out), "--size", "56", "48"]
    )
    assert args.func(args) == 0
    assert "aligned 1 of 1 images to 56x48" in capsys.readouterr().out
    assert np.asarray(Image.open(out / "a.png")).shape == (56, 48, 3)


def test_align_command_failure_exits_nonzero_and_names_image(tmp_path, capsys):
    images, landmarks, out = _setup(tmp_path, with_missing=True)
    report = tmp_path / "report.json"
    argv = ["align", str(images), str(landmarks), str(out), "--report", str(report)]
    args = _parser().parse_args(argv)
    assert args.func(args) == 1
    text = capsys.readouterr().out
    assert "aligned 1 of 2 images" in text
    assert "1 image(s) failed" in text and "line 2: gone.jpg" in text
    saved = json.loads(report.read_text())
    assert saved["written"] == 1 and saved["failed"][0]["image"] == "gone.jpg"
    assert (out / "a.png").is_file()


def test_through_cli_main_when_registered(tmp_path, capsys):
    from sphereface2.cli import build_parser, main

    try:
        build_parser().parse_args(["data", "align", "I", "L", "O"])
    except SystemExit:
        pytest.skip("the data command family does not register 'align' yet")
    images, landmarks, out = _setup(tmp_path, with_missing=True)
    assert main(["data", "align", str(images), str(landmarks), str(out)]) == 1
    assert "gone.jpg" in capsys.readouterr().out
    bad = tmp_path / "bad.txt"
    bad.write_text("a.png 1 2\n")
    assert main(["data", "align", str(images), str(bad), str(out)]) == 1
    assert "bad.txt:1" in capsys.readouterr().err
