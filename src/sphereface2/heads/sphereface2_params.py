"""SphereFace2's hyper-parameters as one checked, immutable value.

Every SphereFace2 path takes it: the plain head, the fused pass, the sharded head and the
bias initialisation. ``build_head("sphereface2", num_classes=K, embedding_dim=d,
margin_type="C", lam=0.7, ...)`` builds one from its keywords; the checks live here only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sphereface2.heads.arg_checks import GRADIENT_MODES, check_choice, check_number

MARGIN_TYPES = ("C", "A", "M")


def check_params(
    head: str,
    margin_type: object = "C",
    lam: object = 0.7,
    r: object = 40.0,
    m: object = 0.4,
    t: object = 3.0,
    lw: object = 10.0,
    gradient: object = "full",
) -> dict[str, Any]:
    """The checked values (numbers as floats); errors start with ``head``.

    lam in (0, 1); r, t, lw > 0; m >= 0, and > 0 for the multiplicative margin "M".
    """
    margin_type = check_choice(head, "margin_type", margin_type, MARGIN_TYPES)
    return {
        "margin_type": margin_type,
        "gradient": check_choice(head, "gradient", gradient, GRADIENT_MODES),
        "lam": check_number(head, "lam", lam, low=0.0, high=1.0),
        "r": check_number(head, "r", r, low=0.0),
        "t": check_number(head, "t", t, low=0.0),
        "lw": check_number(head, "lw", lw, low=0.0),
        "m": check_number(head, "m", m, low=0.0, low_inclusive=margin_type != "M"),
    }


@dataclass(frozen=True)
class SphereFace2Params:
    """margin_type ("C", "A" or "M"), lam, r, m, t, lw and gradient ("full" or "detached");
    see :class:`~sphereface2.heads.sphereface2.SphereFace2Head` for their meaning."""

    margin_type: str = "C"
    lam: float = 0.7
    r: float = 40.0
    m: float = 0.4
    t: float = 3.0
    lw: float = 10.0
    gradient: str = "full"

    def __post_init__(self) -> None:
        for key, value in check_params("sphereface2", **asdict(self)).items():
            object.__setattr__(self, key, value)

    @classmethod
    def for_head(cls, head: str, **values: Any) -> SphereFace2Params:
        """Checked with errors that name ``head`` (e.g. "sphereface2_fused: lam must ...")."""
        return cls(**check_params(head, **values))

    def maths(self) -> dict[str, Any]:
        """The keywords of the loss functions (everything but the loss weight ``lw``)."""
        values = asdict(self)
        del values["lw"]
        return values


class HoldsSphereFace2Params:
    """Mixin of the heads that hold a ``params``: its hyper-parameters as read-only
    attributes (``head.m``, ``head.lam``, ...), defined once for the plain, fused and
    sharded heads."""

    params: SphereFace2Params

    margin_type = property(lambda self: self.params.margin_type)
    lam = property(lambda self: self.params.lam)
    r = property(lambda self: self.params.r)
    m = property(lambda self: self.params.m)
    t = property(lambda self: self.params.t)
    lw = property(lambda self: self.params.lw)
    gradient = property(lambda self: self.params.gradient)
