"""The verdict threshold: read from a real ``sphereface2 evaluate`` report and from edge cases."""

from __future__ import annotations

import json
import math

import pytest
from tiny_inference import run_folder, tiny

from sphereface2.inference.threshold import (
    Threshold,
    find_threshold,
    run_report_path,
    threshold_from_report,
)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A run folder evaluated on two tiny sets by the real command (Combined pools them)."""
    from sphereface2.commands import evaluate as evaluate_cmd

    root = tmp_path_factory.mktemp("evaluated")
    run, _ = run_folder(root / "run")
    bins = []
    for seed, stem in enumerate(("lfw", "cplfw")):
        bins.append(str(root / f"{stem}.bin"))
        tiny.write_tiny_bin(root / f"{stem}.bin", pairs=20, seed=seed)
    import argparse

    parser = argparse.ArgumentParser()
    evaluate_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", str(run), *bins, "--device", "cpu"])
    assert args.func(args) == 0
    return run


def test_the_run_folders_report_gives_the_combined_threshold(evaluated):
    report = evaluated / "eval" / "report.json"
    assert run_report_path(evaluated) == report
    assert run_report_path(evaluated / "model.pt") == report
    raw = json.loads(report.read_text())
    combined = raw["verification"]["combined"]["opensphere_best_threshold"]
    found = find_threshold(evaluated)
    assert found is not None
    assert (found.value, found.set_name, found.source) == (
        combined["threshold"],
        "Combined",
        str(report),
    )
    assert found.protocol == combined["protocol"] and "OpenSphere" in found.protocol
    assert found.accuracy == combined["accuracy"]
    assert found.evaluated_model == raw["model"]["description"]
    text = found.describe()
    assert str(report) in text and "Combined" in text and f"{found.value:.4f}" in text


def test_a_named_set(evaluated):
    report = evaluated / "eval" / "report.json"
    raw = json.loads(report.read_text())
    (lfw,) = [s for s in raw["verification"]["sets"] if s["name"] == "LFW"]
    found = threshold_from_report(report, "lfw")  # names match case-insensitively
    assert (found.set_name, found.value) == ("LFW", lfw["opensphere_best_threshold"]["threshold"])
    with pytest.raises(ValueError, match="no set named 'IJB'; it has Combined, LFW, CPLFW"):
        threshold_from_report(report, "IJB")


def _report(tmp_path, sets, combined=None, **top):
    data = {
        "format": "sphereface2-evaluation",
        "version": 1,
        "model": {"name": "m", "description": "d"},
        "verification": {"sets": sets, "combined": combined},
        **top,
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    return path


def _set(name, pairs, threshold):
    best = {"protocol": "P", "threshold": threshold, "accuracy": 0.5}
    return {"name": name, "num_pairs": pairs, "opensphere_best_threshold": best}


def test_without_combined_the_largest_set(tmp_path):
    path = _report(tmp_path, [_set("A", 10, 0.1), _set("B", 30, 0.2), _set("C", 30, 0.3)])
    assert threshold_from_report(path).set_name == "B"  # the first of the largest


def test_unusable_reports_name_the_file_and_key(tmp_path):
    path = _report(tmp_path, [_set("A", 10, None)])
    with pytest.raises(ValueError, match=r"report.json: verification set 'A': .*threshold is None"):
        threshold_from_report(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a sphereface2 evaluation report"):
        threshold_from_report(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="report.json: not valid JSON"):
        threshold_from_report(path)
    path = _report(tmp_path, [], verification=None)
    with pytest.raises(ValueError, match="holds no verification results"):
        threshold_from_report(path)


def test_given_and_missing(tmp_path):
    assert find_threshold(tmp_path, value=0.25) == Threshold(0.25, "given")
    assert find_threshold(tmp_path) is None  # not a run folder, no report
    with pytest.raises(FileNotFoundError, match="evaluation report not found"):
        find_threshold(tmp_path, report=tmp_path / "nope.json")
    with pytest.raises(ValueError, match="finite"):
        find_threshold(tmp_path, value=math.nan)


def test_verdict_is_cosine_at_least_threshold():
    t = Threshold(0.3, "given")
    assert (t.verdict(0.3), t.verdict(0.2999), t.verdict(0.9)) == ("same", "different", "same")
