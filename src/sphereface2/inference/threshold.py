"""The cosine threshold that turns a score into a verdict (same person / different people).

The threshold is never guessed: SphereFace2's bias is not a usable test threshold
(SphereFace2, Wen et al., ICLR 2022: it is trained with the margins and the lambda
weighting, not calibrated for testing), and a cosine means different things for different
models. It comes from an evaluation report (``RUN/eval/report.json``, written by ``sphereface2
evaluate``): the OpenSphere protocol's best global threshold, where pairs with
``cosine >= threshold`` are called the same person. The Combined set (the pooled pairs of
every evaluated set) is preferred, as the paper calls it the more reliable number; else the
set with the most pairs. Or the user gives one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sphereface2.evaluate.report import REPORT_FORMAT
from sphereface2.models.loading import find_run_folder

#: Where ``sphereface2 evaluate`` writes its report by default, inside a run folder.
RUN_REPORT = Path("eval") / "report.json"


@dataclass(frozen=True)
class Threshold:
    """A cosine threshold and where it came from.

    Attributes:
        value: pairs with ``cosine >= value`` are called the same person.
        source: the report file, or ``"--threshold"`` / ``"given"``.
        set_name: the evaluation set it was chosen on (empty when given).
        protocol: how it was chosen (empty when given).
        accuracy: the set's accuracy at that threshold (None when given).
        evaluated_model: the description of the model the report evaluated, if any.
    """

    value: float
    source: str
    set_name: str = ""
    protocol: str = ""
    accuracy: float | None = None
    evaluated_model: str = ""

    def describe(self) -> str:
        """One line: the value, the protocol and set, and the file."""
        if not self.set_name:
            return f"threshold {self.value:.4f} ({self.source})"
        accuracy = f", accuracy {100 * self.accuracy:.2f}%" if self.accuracy is not None else ""
        return (
            f"threshold {self.value:.4f} [{self.protocol}] on {self.set_name}{accuracy}, "
            f"from {self.source}"
        )

    def verdict(self, cosine: float) -> str:
        """``"same"`` when ``cosine >= value``, else ``"different"``."""
        return "same" if cosine >= self.value else "different"


def run_report_path(model_path: str | os.PathLike) -> Path | None:
    """``RUN/eval/report.json`` of the run folder that ``model_path`` is or lies in, if
    that file exists."""
    run = find_run_folder(model_path)
    if run is None or not (run / RUN_REPORT).is_file():
        return None
    return run / RUN_REPORT


def _sets(report: Mapping[str, Any], source: str) -> list[Mapping[str, Any]]:
    verification = report.get("verification")
    if not isinstance(verification, Mapping):
        raise ValueError(
            f"{source}: holds no verification results (key 'verification'), so no threshold"
        )
    sets = verification.get("sets")
    if not isinstance(sets, list) or not all(isinstance(s, Mapping) for s in sets):
        raise ValueError(f"{source}: verification.sets: expected a list of sets")
    combined = verification.get("combined")
    return ([combined] if isinstance(combined, Mapping) else []) + list(sets)


def _choose(sets: list[Mapping[str, Any]], set_name: str | None, source: str) -> Mapping:
    names = [str(s.get("name")) for s in sets]
    if set_name is not None:
        for s, name in zip(sets, names):
            if name.lower() == set_name.lower():
                return s
        raise ValueError(f"{source}: no set named {set_name!r}; it has {', '.join(names)}")
    if not sets:
        raise ValueError(f"{source}: verification.sets is empty")
    if any(name == "Combined" for name in names):  # listed first by _sets when present
        return sets[0]
    return max(sets, key=lambda s: s.get("num_pairs") or 0)  # first of the largest


def threshold_from_report(path: str | os.PathLike, set_name: str | None = None) -> Threshold:
    """The OpenSphere best threshold of one set of an evaluation report (see the module
    docstring for the default set).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not an evaluation report, no such set, or no finite threshold (the
            message names the file and the key).
    """
    source = str(path)
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err})") from None
    if not isinstance(report, Mapping) or report.get("format") != REPORT_FORMAT:
        raise ValueError(
            f"{source}: not a sphereface2 evaluation report (format != {REPORT_FORMAT!r})"
        )
    chosen = _choose(_sets(report, source), set_name, source)
    name = str(chosen.get("name"))
    best = chosen.get("opensphere_best_threshold")
    key = f"verification set {name!r}: opensphere_best_threshold"
    if not isinstance(best, Mapping):
        raise ValueError(f"{source}: {key}: missing")
    value = best.get("threshold")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        # JSON null: the best was to accept nothing (or nothing could be measured)
        raise ValueError(f"{source}: {key}.threshold is {value!r}, not a usable cosine")
    accuracy = best.get("accuracy")
    model = report.get("model")
    return Threshold(
        value=float(value),
        source=source,
        set_name=name,
        protocol=str(best.get("protocol") or "OpenSphere best threshold"),
        accuracy=float(accuracy) if isinstance(accuracy, int | float) else None,
        evaluated_model=str(model.get("description", "")) if isinstance(model, Mapping) else "",
    )


def find_threshold(
    model_path: str | os.PathLike,
    value: float | None = None,
    report: str | os.PathLike | None = None,
    set_name: str | None = None,
) -> Threshold | None:
    """The threshold to use with the model at ``model_path``: ``value`` if given, else the
    one of ``report``, else the one of the model's run-folder report; None when no
    threshold is known."""
    if value is not None:
        if not math.isfinite(value):
            raise ValueError(f"threshold must be a finite cosine, got {value}")
        return Threshold(float(value), "given")
    path = Path(report) if report is not None else run_report_path(model_path)
    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"evaluation report not found: {path}")
    return threshold_from_report(path, set_name)
