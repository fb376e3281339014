"""``sphereface2 evaluate MODEL --ijb DIR`` through sphereface2.cli.main: the printed TAR@FAR
table names its read method, the report holds the IJB rows (equal to the Python API), DATA is
optional, and bad input is one clear line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402
from ijb_fixture import write_ijb_fixture  # noqa: E402

from sphereface2 import cli  # noqa: E402
from sphereface2.evaluate.ijb_runner import evaluate_ijb  # noqa: E402
from sphereface2.evaluate.model_loading import load_embedding_model  # noqa: E402
from sphereface2.evaluate.report import (  # noqa: E402
    IdentificationRow,
    build_report,
    format_text_table,
    identification_tables,
    markdown_report,
    report_to_dict,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijb_cli")
    tiny.write_run_folder(root / "run", with_model_pt=True)
    write_ijb_fixture(root / "ijb", "IJBC", seed=3)
    tiny.write_tiny_bin(root / "lfw.bin", pairs=20)
    return root


def _main(argv: list[str]) -> int:
    return cli.main(["evaluate", *argv, "--device", "cpu"])


def test_ijb_alone_prints_the_table_and_writes_the_report(data, tmp_path, capsys):
    argv = [str(data / "run"), "--ijb", str(data / "ijb"), "--ijb-name", "ijbc", "--ijb-1n"]
    assert _main([*argv, "--out", str(tmp_path / "out"), "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    tar_rows = [line for line in lines if line.startswith("IJB-C [1:1 template verification")]
    assert len(tar_rows) == 2
    assert "nearest ROC point (InsightFace)" in tar_rows[0]
    assert "linear interpolation (OpenSphere)" in tar_rows[1]
    assert "TAR@FAR=1e-6" in out and "TAR@FAR=1e-1" in out
    assert any(line.startswith("IJB-C 1:N [mixed probes vs galleries G1 and G2") for line in lines)
    assert "metric (%) [protocol]" not in out  # no verification sets given

    model = load_embedding_model(data / "run", "cpu")
    want = evaluate_ijb(model, data / "ijb", "IJBC", one_to_n="insightface")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "verification" not in report
    assert [(r["name"], r["method"]) for r in report["ijb"]] == [
        ("IJB-C", "nearest"),
        ("IJB-C", "interpolated"),
    ]
    genuine = int(want.labels.sum())
    impostor = len(want.labels) - genuine
    for row in report["ijb"]:
        assert (row["num_genuine"], row["num_impostor"]) == (genuine, impostor)
        reads = [r for r in want.verification.tar_at_far if r.method == row["method"]]
        # A FAR below 1/impostor pairs cannot be resolved: null with the reason.
        resolved = [r for r in reads if r.fpr * impostor >= 1]
        assert resolved and len(resolved) < len(reads)  # the fixture has both kinds
        assert [row["tar_at_far"][repr(r.fpr)] for r in resolved] == pytest.approx(
            [r.tpr for r in resolved]
        )
        for r in reads[: len(reads) - len(resolved)]:
            assert row["tar_at_far"][repr(r.fpr)] is None
            assert f"has {impostor:,}" in row["unresolved"][repr(r.fpr)]
    assert f"n/a ({impostor:,} impostor pairs)" in tar_rows[0]
    assert tar_rows[0].endswith(f"{genuine:,} / {impostor:,}")
    (ident,) = report["identification"]
    assert ident["name"] == "IJB-C 1:N" and "InsightFace" in ident["protocol"]
    assert ident["rates"]["top-1"] == pytest.approx(want.identification.rates[0])
    assert ident["rates"]["TPIR@FPIR=1e-2 [nonmated-max]"] == pytest.approx(
        want.identification.tpir[0].tpir
    )
    assert "IJB-C" in report["settings"] and "faceness weighting on" in report["settings"]["IJB-C"]
    assert "--ijb-1n insightface" in report["settings"]["command"]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## TAR at FAR" in markdown and "## Identification" in markdown
    assert "![IJB 1:1 ROC, log-scale FAR](roc_ijb.png)" in markdown
    assert (tmp_path / "out" / "roc_ijb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out" / "roc.png").exists()


def test_data_and_ijb_together_and_the_cache(data, tmp_path, capsys):
    cache = tmp_path / "feats.npy"
    argv = [str(data / "run"), str(data / "lfw.bin"), "--ijb", str(data / "ijb")]
    argv += ["--ijb-cache", str(cache), "--ijb-no-faceness", "--out", str(tmp_path / "o")]
    assert _main(argv) == 0
    first = capsys.readouterr().out
    assert "metric (%) [protocol]" in first and "IJB-C [1:1 template verification" in first
    images = (
        len((data / "ijb/IJB_release/IJBC/meta/ijbc_face_tid_mid.txt").read_text().split("\n")) - 1
    )
    assert f"IJB-C: {images} images embedded" in first
    assert cache.is_file() and cache.with_suffix(".json").is_file()
    assert _main(argv) == 0
    second = capsys.readouterr().out
    assert "read from the cache" in second
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["verification"]["columns"] == ["LFW"]
    assert "faceness weighting off" in report["settings"]["IJB-C"]
    assert f"image features from the cache {cache}" in report["settings"]["IJB-C"]


def test_opensphere_one_to_n_is_named(data, tmp_path, capsys):
    argv = [str(data / "run"), "--ijb", str(data / "ijb" / "IJB_release"), "--ijb-1n"]
    assert _main([*argv, "opensphere", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "merged gallery G1 and G2" in out and "[opensphere-pairs]" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to evaluate: give DATA files, --ijb DIR"),
        (["--ijb-1n"], "--ijb-1n needs --ijb DIR"),
        (["--ijb", "{root}/nowhere"], "IJB folder not found: {root}/nowhere"),
        (["--megaface-probes", "x"], "MegaFace needs both --megaface-probes and"),
    ],
)
def test_errors_are_one_clear_line(data, capsys, argv, message):
    argv = [a.format(root=data) for a in argv]
    assert _main([str(data / "run"), *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sphereface2 evaluate: error: ")
    assert message.format(root=data) in err[-1]


def test_a_missing_image_is_one_line_naming_it(data, tmp_path, capsys):
    fx = write_ijb_fixture(tmp_path, "IJBB", subjects=2, seed=6)
    (fx.image_dir / fx.image_names[1]).unlink()
    assert _main([str(data / "run"), "--ijb", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{fx.image_dir / fx.image_names[1]}: image not found" in err
    assert "ijbb_name_5pts_score.txt:2" in err


def test_identification_rows_in_reports():
    rows = [
        IdentificationRow("IJB-C 1:N", {"top-1": 0.9, "TPIR@FPIR=1e-2 [x]": math.nan}, "p", "d"),
        IdentificationRow("MegaFace, 10 distractors", {"rank-1": 0.5}, "m"),
        IdentificationRow("MegaFace, 100 distractors", {"rank-1": 0.25}, "m"),
    ]
    tables = identification_tables(rows)
    assert [t[0] for t in tables] == [
        ["benchmark [protocol]", "top-1 (%)", "TPIR@FPIR=1e-2 [x] (%)", "detail"],
        ["benchmark [protocol]", "rank-1 (%)", "detail"],
    ]
    assert tables[0][1] == [["IJB-C 1:N [p]", "90.00", "n/a", "d"]]
    assert [r[1] for r in tables[1][1]] == ["50.00", "25.00"]
    report = build_report("m", "desc", identification=rows)
    assert "identification:" in format_text_table(report)
    assert "| MegaFace, 100 distractors [m] | 25.00 |  |" in markdown_report(report)
    as_json = report_to_dict(report)["identification"]
    assert as_json[0]["rates"] == {"top-1": 0.9, "TPIR@FPIR=1e-2 [x]": None}
    with pytest.raises(ValueError, match=r"'x': rank-1 = 90.0 is not a rate in \[0, 1\]"):
        IdentificationRow("x", {"rank-1": 90.0}, "p")
    with pytest.raises(ValueError, match="'x': no rates"):
        IdentificationRow("x", {}, "p")
