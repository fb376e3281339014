"""``sphereface2 gallery build`` and ``gallery search`` through the command line."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2 import cli  # noqa: E402
from sphereface2.commands import gallery as gallery_cmd  # noqa: E402
from sphereface2.inference import faiss_index, load_model  # noqa: E402
from sphereface2.inference.gallery import load_gallery  # noqa: E402


@pytest.fixture
def main(monkeypatch):
    """sphereface2.cli.main with this family registered (whether or not cli.py lists it)."""
    families = tuple(dict.fromkeys((*cli._COMMAND_MODULES, "gallery")))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", families)
    return cli.main


@pytest.fixture
def built(tmp_path, main, capsys):
    tiny.write_run_folder(tmp_path / "run", with_model_pt=True)
    tiny.write_image_folder(tmp_path / "faces", identities=4, per_identity=2)
    argv = ["gallery", "build", str(tmp_path / "run"), str(tmp_path / "faces"), str(tmp_path / "g")]
    assert main([*argv, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "gallery: 8 images of 4 identities, 16-d, flip on" in out
    assert "model fingerprint: " in out
    return tmp_path


def test_search_prints_and_writes_json(built, main, capsys):
    queries = [str(built / "faces" / "id1" / "0.png"), str(built / "faces" / "id3" / "1.png")]
    out_json = built / "r.json"
    argv = ["gallery", "search", str(built / "g"), *queries, "--top-k", "2"]
    assert main([*argv, "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "exact search" in text and f"{queries[0]}:" in text
    data = json.loads(out_json.read_text())
    assert [r["query"] for r in data["results"]] == queries
    model = load_model(built / "run", device="cpu")
    gallery = load_gallery(built / "g")
    for result, query in zip(data["results"], queries):
        assert len(result["matches"]) == 2
        best = result["matches"][0]
        assert best["path"] == query and best["score"] == pytest.approx(1.0, abs=1e-5)
        # the second: the best image of the best other identity, by brute force
        scores = np.asarray(gallery.embeddings) @ model.embed(query)[0]
        scores[gallery.labels == gallery.labels[gallery.paths.index(query)]] = -2
        second = int(np.argmax(scores))
        assert result["matches"][1]["path"] == gallery.paths[second]
        assert result["matches"][1]["identity"] == gallery.identities[gallery.labels[second]]
        assert result["matches"][1]["score"] == pytest.approx(float(scores[second]), abs=1e-5)


def test_per_image_and_the_model_check(built, main, capsys):
    query = str(built / "faces" / "id0" / "0.png")
    assert (
        main(["gallery", "search", str(built / "g"), query, "--per", "image", "--top-k", "2"]) == 0
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert [line.split()[2] for line in lines] == ["id0", "id0"]  # both images of id0
    other = str(built / "run" / "checkpoints" / "ckpt_00000002.pt")
    assert main(["gallery", "search", str(built / "g"), query, "--model", other]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was built with another model" in err


def test_build_refuses_to_replace_a_gallery(built, main, capsys):
    argv = ["gallery", "build", str(built / "run"), str(built / "faces"), str(built / "g")]
    assert main(argv) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--no-flip"]) == 0
    assert not load_gallery(built / "g").flip


@pytest.mark.skipif(not faiss_index.faiss_available(), reason="faiss not installed")
def test_faiss_index_from_the_command_line(built, main, capsys):
    argv = ["gallery", "build", str(built / "run"), str(built / "faces"), str(built / "g")]
    assert main([*argv, "--overwrite", "--index", "faiss"]) == 0
    assert "index: faiss IndexFlatIP" in capsys.readouterr().out
    query = str(built / "faces" / "id2" / "1.png")
    assert main(["gallery", "search", str(built / "g"), query, "--index", "faiss"]) == 0
    out = capsys.readouterr().out
    assert "faiss.index" in out and f"id2  {query}" in out


def test_every_help_example_parses(main):
    parser = cli.build_parser()
    examples = []
    for epilog in (gallery_cmd._BUILD_EPILOG, gallery_cmd._SEARCH_EPILOG):
        for line in epilog.splitlines():
            if line.strip().startswith("sphereface2 gallery"):
                examples.append(shlex.split(line.split("#")[0])[1:])
    assert len(examples) == 6
    for argv in examples:
        parser.parse_args(argv)


def test_the_family_alone_prints_its_help(main, capsys):
    assert main(["gallery"]) == 2
    assert "build" in capsys.readouterr().out
