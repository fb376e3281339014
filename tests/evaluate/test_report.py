"""report: Markdown with the protocol beside every number, JSON, ROC PNG, terminal table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
import tiny_eval_data as tiny  # noqa: E402

from sphereface2.evaluate.model_loading import TorchEmbeddingModel  # noqa: E402
from sphereface2.evaluate.report import (  # noqa: E402
    TarAtFar,
    as_tar_at_far,
    build_report,
    format_text_table,
    ijb_rows,
    markdown_report,
    ordered_sets,
    report_to_dict,
    verification_rows,
    write_report,
)
from sphereface2.evaluate.runner import evaluate_verification_sets  # noqa: E402
from sphereface2.evaluate.verification_sets import open_bin_set  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Five sets given out of paper order: cfp_fp, cplfw, lfw, calfw, agedb_30."""
    root = tmp_path_factory.mktemp("sets")
    model = TorchEmbeddingModel(tiny.build_tiny(4), tiny.model_config(), name="tiny")
    sets = []
    for seed, stem in enumerate(("cfp_fp", "cplfw", "lfw", "calfw", "agedb_30")):
        tiny.write_tiny_bin(root / f"{stem}.bin", pairs=20, seed=seed)
        sets.append(open_bin_set(root / f"{stem}.bin", input_size=model.input_size))
    return evaluate_verification_sets(model, sets, batch_size=64)


def test_columns_follow_the_paper(run):
    assert [s.name for s in ordered_sets(run)] == [
        "LFW",
        "AgeDB-30",
        "CALFW",
        "CPLFW",
        "CFP-FP",
        "Combined",
    ]
    assert run.combined.members == ("LFW", "AgeDB-30", "CALFW", "CPLFW")  # CFP-FP left out


def test_every_row_names_its_protocol_and_shows_the_numbers(run):
    header, rows = verification_rows(run)
    assert header[0] == "metric (%) [protocol]"
    for row in rows[:-1]:  # the last row counts pairs
        assert (
            "[InsightFace" in row[0]
            or "[OpenSphere" in row[0]
            or "[linear" in row[0]
            or ("[nearest" in row[0])
        ), row[0]
    by_label = {row[0]: row[1:] for row in rows}
    lfw = next(s for s in run.sets if s.name == "LFW").result
    assert by_label["accuracy, mean +- std [InsightFace 10-fold]"][0] == (
        f"{100 * lfw.kfold.accuracy:.2f} +- {100 * lfw.kfold.std:.2f}"
    )
    assert by_label["accuracy [OpenSphere best threshold]"][0] == (
        f"{100 * lfw.best_threshold.accuracy:.2f}"
    )
    combined = run.combined.result
    assert (
        by_label["AUC [OpenSphere, cosine ROC]"][-1] == f"{100 * combined.best_threshold.auc:.2f}"
    )
    nearest = [r for r in lfw.best_threshold.tpr_at_fpr if r.method == "nearest" and r.fpr == 1e-2]
    assert by_label["TPR@FPR=1e-2 [nearest ROC point (InsightFace)]"][0] == (
        f"{100 * nearest[0].tpr:.2f}"
    )
    assert by_label["pairs (genuine / impostor)"][-1] == "80 (40 / 40)"


def test_markdown_names_protocols_beside_numbers(run):
    text = markdown_report(build_report("tiny", "a tiny model", run))
    assert text.startswith("# Evaluation of tiny")
    table = [line for line in text.splitlines() if line.startswith("| accuracy")]
    assert table[0].startswith("| accuracy, mean +- std [InsightFace 10-fold] |")
    assert table[1].startswith("| accuracy [OpenSphere best threshold] |")
    assert "| metric (%) [protocol] | LFW | AgeDB-30 | CALFW | CPLFW | CFP-FP | Combined |" in text
    assert "**Combined**: the pooled pairs of LFW, AgeDB-30, CALFW, CPLFW" in text
    assert "sum of the raw embeddings of each image and its horizontal flip" in text
    assert "![ROC" in text


def test_write_report_files(run, tmp_path):
    ijb = {"IJB-C": {"tar_at_far": {1e-4: 0.9, 1e-5: 0.8}, "method": "interpolated"}}
    report = build_report("tiny", "a tiny model", run, ijb=ijb, settings={"device": "cpu"})
    written = write_report(report, tmp_path / "eval")
    assert set(written) == {"roc", "markdown", "json"}
    assert written["roc"].read_bytes()[:8] == PNG_MAGIC
    with Image.open(written["roc"]) as image:
        image.verify()
    data = json.loads(written["json"].read_text())
    assert data["format"] == "sphereface2-evaluation" and data["model"]["name"] == "tiny"
    ver = data["verification"]
    assert ver["columns"] == ["LFW", "AgeDB-30", "CALFW", "CPLFW", "CFP-FP", "Combined"]
    lfw_json = next(s for s in ver["sets"] if s["name"] == "LFW")
    lfw = next(s for s in run.sets if s.name == "LFW").result
    assert lfw_json["insightface_10fold"]["accuracy"] == lfw.kfold.accuracy
    assert lfw_json["insightface_10fold"]["protocol"].startswith("InsightFace 10-fold")
    assert lfw_json["opensphere_best_threshold"]["eer"] == lfw.best_threshold.eer
    assert lfw_json["opensphere_best_threshold"]["protocol"].startswith("OpenSphere")
    assert len(lfw_json["insightface_10fold"]["fold_accuracies"]) == 10
    assert ver["combined"]["members"] == ["LFW", "AgeDB-30", "CALFW", "CPLFW"]
    assert data["ijb"] == [
        {
            "name": "IJB-C",
            "protocol": "1:1 verification",
            "method": "interpolated",
            "num_genuine": None,
            "num_impostor": None,
            "tar_at_far": {"1e-05": 0.8, "0.0001": 0.9},
            "unresolved": {},
        }
    ]
    markdown = written["markdown"].read_text()
    assert "| IJB-C [1:1 verification] | 80.00 | 90.00 | linear interpolation (OpenSphere) |" in (
        markdown
    )


def test_json_has_no_nan(tmp_path):
    """A set with only genuine pairs has no EER/AUC: they are null, not NaN."""
    model = TorchEmbeddingModel(tiny.build_tiny(), tiny.model_config(), name="tiny")
    from sphereface2.data.bin_format import write_bin
    from sphereface2.data.decode import encode_jpeg

    rng = np.random.default_rng(0)
    write_bin(tmp_path / "same.bin", [encode_jpeg(tiny.face(rng, 1)) for _ in range(4)], [1, 1])
    result = evaluate_verification_sets(model, [open_bin_set(tmp_path / "same.bin")], folds=2)
    report = build_report("tiny", "tiny", result)
    written = write_report(report, tmp_path / "out")
    data = json.loads(written["json"].read_text())
    assert data["verification"]["sets"][0]["opensphere_best_threshold"]["auc"] is None
    assert "NaN" not in written["json"].read_text()
    assert written["roc"].read_bytes()[:8] == PNG_MAGIC  # an empty plot that says why
    assert "n/a" in format_text_table(report)


def test_ijb_inputs_and_table():
    reads = {"IJB-B": {"tar_at_far": {1e-4: 0.8795, 1e-3: 0.93}, "method": "nearest"}}
    header, rows = ijb_rows([row for k, v in reads.items() for row in as_tar_at_far(k, v)])
    assert header == ["benchmark [protocol]", "TAR@FAR=1e-4", "TAR@FAR=1e-3", "TAR read at"]
    assert rows == [
        ["IJB-B [1:1 verification]", "87.95", "93.00", "nearest ROC point (InsightFace)"]
    ]

    class Result:  # anything with tar_at_far and method attributes
        tar_at_far = {1e-4: 0.9}
        method = "interpolated"
        protocol = "1:1 template verification"

    assert as_tar_at_far("IJB-C", Result()) == [
        TarAtFar("IJB-C", {1e-4: 0.9}, "interpolated", "1:1 template verification")
    ]
    with pytest.raises(ValueError, match="needs the method"):
        as_tar_at_far("IJB-C", {"tar_at_far": {1e-4: 0.9}})
    with pytest.raises(ValueError, match="out of range"):
        as_tar_at_far("IJB-C", {"tar_at_far": {1e-4: 90.0}, "method": "nearest"})
    with pytest.raises(ValueError, match="needs verification results or IJB results"):
        build_report("m", "d")
    report = build_report("m", "d", ijb=reads)
    assert "TAR (%) at FAR" in format_text_table(report)
    assert "verification" not in report_to_dict(report)


def test_ijb_results_from_the_ijb_module():
    """An IJBVerificationResult (reads by both methods) gives one row per method."""
    from sphereface2.evaluate.ijb import ijb_11

    rng = np.random.default_rng(0)
    feats = rng.standard_normal((60, 8))
    ids = np.arange(60)
    t1 = rng.integers(0, 60, 3000)
    t2 = rng.integers(0, 60, 3000)
    labels = (t1 % 5 == t2 % 5).astype(int)
    feats[:, 0] += 4 * (ids % 5)  # templates of one "identity" share a direction
    result = ijb_11(feats, ids, t1, t2, labels, fars=(1e-3, 1e-2, 1e-1))
    rows = as_tar_at_far("IJB-B", result)
    assert [r.method for r in rows] == ["nearest", "interpolated"]
    for row in rows:
        assert row.protocol == result.protocol
        for read in result.tar_at_far:
            if read.method == row.method:
                assert row.tar_at_far[read.fpr] == read.tpr
    report = build_report("m", "d", ijb={"IJB-B": result})
    header, table = ijb_rows(report.ijb)
    assert header[-2:] == ["TAR read at", "pairs (genuine / impostor)"]
    assert [r[-2] for r in table] == [
        "nearest ROC point (InsightFace)",
        "linear interpolation (OpenSphere)",
    ]
    genuine = int(labels.sum())
    assert [r[-1] for r in table] == [f"{genuine:,} / {3000 - genuine:,}"] * 2
    nearest = next(r for r in result.tar_at_far if r.method == "nearest" and r.fpr == 1e-2)
    assert table[0][2] == f"{100 * nearest.tpr:.2f}"


# --------------------------------------------------------------------------------------
# IJB: FARs the impostor pairs cannot resolve, pair counts, the IJB ROC plot
# --------------------------------------------------------------------------------------


def test_a_far_below_one_over_the_impostor_pairs_is_not_a_number(tmp_path):
    result = {
        "tar_at_far": {1e-5: 0.5, 1e-4: 0.7, 1e-3: 0.9},
        "method": "nearest",
        "num_genuine": 120,
        "num_impostor": 10_000,  # resolves FAR >= 1e-4 exactly, not 1e-5
    }
    report = build_report("m", "d", ijb={"IJB-B": result})
    header, rows = ijb_rows(report.ijb)
    assert header[1:4] == ["TAR@FAR=1e-5", "TAR@FAR=1e-4", "TAR@FAR=1e-3"]
    assert rows[0][1:] == [
        "n/a (10,000 impostor pairs)",
        "70.00",
        "90.00",
        "nearest ROC point (InsightFace)",
        "120 / 10,000",
    ]
    text = format_text_table(report)
    assert "n/a (10,000 impostor pairs)" in text and "smallest non-zero FAR is 1/N" in text
    markdown = markdown_report(report)
    assert "| n/a (10,000 impostor pairs) | 70.00 | 90.00 |" in markdown
    (row,) = report_to_dict(report)["ijb"]
    assert row["tar_at_far"] == {"1e-05": None, "0.0001": 0.7, "0.001": 0.9}
    assert row["unresolved"] == {
        "1e-05": "FAR 1e-5 needs at least 100,000 impostor pairs; this benchmark has 10,000"
    }
    assert (row["num_genuine"], row["num_impostor"]) == (120, 10_000)
    # 1e-6 x 1e6 rounds below 1 in floating point; it is still resolved.
    exact = TarAtFar("x", {1e-6: 0.5}, "nearest", num_genuine=1, num_impostor=10**6)
    assert exact.resolves(1e-6) and not exact.resolves(1e-7)


def _full_roc_points(scores, labels):
    from sphereface2.evaluate.roc import roc_curve

    roc = roc_curve(scores, labels)
    return roc, set(zip(roc.fpr.tolist(), roc.tpr.tolist()))


def test_roc_points_are_a_thinned_subset_of_the_curve():
    from sphereface2.evaluate.roc_plot import roc_points

    rng = np.random.default_rng(0)
    labels = rng.random(200_000) < 0.01
    scores = rng.normal(size=labels.shape) + 3 * labels
    roc, points = _full_roc_points(scores, labels)
    thin = roc_points("IJB-X", roc, auc=0.9, max_points=300)
    assert len(roc) > 100_000 and len(thin.fpr) <= 302
    assert thin.fpr[0] == roc.fpr[roc.fpr > 0][0]  # starts at the first false accept
    assert thin.fpr[-1] == 1.0 and thin.tpr[-1] == 1.0
    assert np.all(np.diff(thin.fpr) >= 0) and np.all(np.diff(thin.tpr) >= 0)
    # Every later point is a point of the true curve; after the first false accept each is
    # the highest TPR reached at its FPR (the curve is never drawn above the truth).
    assert all((f, t) in points for f, t in zip(thin.fpr[1:].tolist(), thin.tpr[1:].tolist()))
    for f, t in zip(thin.fpr[2:], thin.tpr[2:]):
        assert t == roc.tpr[roc.fpr <= f].max()
    # The FPRs spread over the log axis: every decade between the first and 1 has points.
    decades = np.floor(np.log10(thin.fpr[thin.fpr < 1])).astype(int)
    assert set(decades) == set(range(decades.min(), 0))


def test_write_report_plots_the_ijb_roc(tmp_path):
    from sphereface2.evaluate.roc import roc_curve
    from sphereface2.evaluate.roc_plot import roc_points

    rng = np.random.default_rng(1)
    labels = rng.random(5000) < 0.1
    scores = rng.normal(size=5000) + 2 * labels
    ijb = {"IJB-C": {"tar_at_far": {1e-3: 0.5}, "method": "nearest"}}
    curve = roc_points("IJB-C", roc_curve(scores, labels), auc=0.93)
    report = build_report("m", "d", ijb=ijb, ijb_roc=[curve])
    written = write_report(report, tmp_path / "r")
    assert set(written) == {"ijb_roc", "markdown", "json"}  # no pair sets: no roc.png
    assert written["ijb_roc"].name == "roc_ijb.png"
    with Image.open(written["ijb_roc"]) as image:
        image.verify()
    assert "![IJB 1:1 ROC, log-scale FAR](roc_ijb.png)" in written["markdown"].read_text()
