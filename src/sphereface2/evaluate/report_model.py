"""The evaluation report's data: what a report holds (:class:`EvaluationReport`), its
TAR@FAR rows (:class:`TarAtFar`) and identification rows (:class:`IdentificationRow`), and
:func:`build_report`, which checks and normalises results of any accepted form into them.

Tables and the Markdown page are :mod:`sphereface2.evaluate.report_tables`, the JSON summary
:mod:`sphereface2.evaluate.report_json`, the files :mod:`sphereface2.evaluate.report`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sphereface2.evaluate.roc_plot import RocPoints
from sphereface2.evaluate.runner import VerificationRun
from sphereface2.metrics.roc import fpr_resolved


def far_label(far: float) -> str:
    """A FAR as tables print it: ``1e-4``, ``1e-10``."""
    return f"{far:.0e}".replace("e-0", "e-")


@dataclass(frozen=True)
class TarAtFar:
    """TAR read at several FARs on one template/pair benchmark (IJB-B, IJB-C, ...).

    Attributes:
        name: the benchmark (table row).
        tar_at_far: ``{far: tar}``, rates as fractions in [0, 1].
        method: how TAR was read: ``nearest`` (InsightFace), ``interpolated`` (OpenSphere)
            or a free description.
        protocol: what was evaluated, e.g. ``1:1 template verification``.
        num_genuine, num_impostor: the pairs behind the rates (None: not given).
    """

    name: str
    tar_at_far: Mapping[float, float]
    method: str
    protocol: str = "1:1 verification"
    num_genuine: int | None = None
    num_impostor: int | None = None

    def resolves(self, far: float) -> bool:
        """False when there are fewer than 1 / ``far`` impostor pairs: the ROC's first step
        above FAR 0 is already larger than ``far``, so no threshold reaches it."""
        return self.num_impostor is None or fpr_resolved(far, self.num_impostor)

    def unresolved_reason(self, far: float) -> str:
        """Why TAR at ``far`` is not given (see :meth:`resolves`)."""
        return (
            f"FAR {far_label(far)} needs at least {math.ceil(1 / far - 1e-9):,} impostor "
            f"pairs; this benchmark has {self.num_impostor:,}"
        )


def _check_rates(name: str, tars: Mapping[Any, Any]) -> dict[float, float]:
    clean: dict[float, float] = {}
    for far, tar in tars.items():
        far, tar = float(far), float(tar)
        if not 0.0 < far <= 1.0 or not (0.0 <= tar <= 1.0 or math.isnan(tar)):
            raise ValueError(f"result {name!r}: TAR {tar!r} at FAR {far!r} is out of range")
        clean[far] = tar
    return dict(sorted(clean.items()))


def as_tar_at_far(name: str, value: Any) -> list[TarAtFar]:
    """Normalise an IJB-style result into one :class:`TarAtFar` per read method.

    Accepts a :class:`TarAtFar`; a mapping ``{"tar_at_far": {far: tar}, "method": ...,
    "protocol": ...}``; an object with such attributes; or an object (or mapping) whose
    ``tar_at_far`` is a sequence of :class:`~sphereface2.metrics.roc.TprAtFpr` reads, such
    as :class:`sphereface2.metrics.ijb.IJBVerificationResult` (each read carries its own
    method: one row per method).
    """
    if isinstance(value, TarAtFar):
        return [value]
    if isinstance(value, Mapping):
        getter = value.get
    else:

        def getter(key: str, default: Any = None) -> Any:
            return getattr(value, key, default)

    tars = getter("tar_at_far")
    protocol = str(getter("protocol", None) or "1:1 verification")
    counts = _counts(name, getter("num_genuine", None), getter("num_impostor", None))
    if isinstance(tars, Sequence) and tars and all(hasattr(r, "method") for r in tars):
        methods = list(dict.fromkeys(r.method for r in tars))
        return [
            TarAtFar(
                name,
                _check_rates(name, {r.fpr: r.tpr for r in tars if r.method == m}),
                m,
                protocol,
                *counts,
            )
            for m in methods
        ]
    method = getter("method")
    if not isinstance(tars, Mapping) or not tars:
        raise ValueError(
            f"result {name!r}: needs a non-empty tar_at_far mapping {{far: tar}} or a "
            "sequence of TprAtFpr reads"
        )
    if not isinstance(method, str) or not method:
        raise ValueError(
            f"result {name!r}: needs the method that read TAR ('nearest' or 'interpolated')"
        )
    return [TarAtFar(name, _check_rates(name, tars), method, protocol, *counts)]


def _counts(name: str, genuine: Any, impostor: Any) -> tuple[int | None, int | None]:
    out = []
    for what, value in (("num_genuine", genuine), ("num_impostor", impostor)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 0):
            raise ValueError(f"result {name!r}: {what} must be a count, got {value!r}")
        out.append(None if value is None else int(value))
    return out[0], out[1]


@dataclass(frozen=True)
class IdentificationRow:
    """Identification rates on one benchmark (IJB 1:N, MegaFace with n distractors, ...).

    Attributes:
        name: the benchmark (table row).
        rates: ``{column: rate}`` in table order, rates as fractions in [0, 1] (NaN: undefined),
            e.g. ``{"top-1": 0.9, "TPIR@FPIR=1e-2 [nonmated-max]": 0.8}``.
        protocol: what was measured and how (the convention, the galleries).
        detail: counts worth showing (probes, distractors).
    """

    name: str
    rates: Mapping[str, float]
    protocol: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.rates:
            raise ValueError(f"identification result {self.name!r}: no rates")
        for column, rate in self.rates.items():
            rate = float(rate)
            if not (0.0 <= rate <= 1.0 or math.isnan(rate)):
                raise ValueError(
                    f"identification result {self.name!r}: {column} = {rate!r} is not a rate "
                    "in [0, 1]"
                )


@dataclass
class EvaluationReport:
    """Everything a report shows.

    Attributes:
        model: short model name (table titles).
        model_description: what was loaded and from where.
        verification: the pair-set results, if any.
        ijb: IJB-style TAR@FAR rows (one per benchmark and read method).
        identification: identification rows (IJB 1:N, MegaFace).
        ijb_roc: IJB 1:1 ROC curves to plot (``roc_ijb.png``).
        settings: anything else worth recording (device, batch size, command line, ...).
        created: ISO time of the evaluation.
    """

    model: str
    model_description: str
    verification: VerificationRun | None = None
    ijb: list[TarAtFar] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    identification: list[IdentificationRow] = field(default_factory=list)
    ijb_roc: list[RocPoints] = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def build_report(
    model: str,
    model_description: str,
    verification: VerificationRun | None = None,
    ijb: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    identification: Sequence[IdentificationRow] | None = None,
    ijb_roc: Sequence[RocPoints] | None = None,
) -> EvaluationReport:
    """An :class:`EvaluationReport`; ``ijb`` maps benchmark names to results in any form
    :func:`as_tar_at_far` accepts; ``identification`` lists identification rows;
    ``ijb_roc`` the IJB 1:1 curves (:func:`~sphereface2.evaluate.roc_plot.roc_points`)."""
    if verification is None and not ijb and not identification:
        raise ValueError(
            "a report needs verification results or IJB results (or identification results)"
        )
    return EvaluationReport(
        model=model,
        model_description=model_description,
        verification=verification,
        ijb=[row for name, value in (ijb or {}).items() for row in as_tar_at_far(name, value)],
        settings=dict(settings or {}),
        identification=list(identification or []),
        ijb_roc=list(ijb_roc or []),
    )
