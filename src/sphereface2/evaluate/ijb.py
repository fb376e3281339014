"""Moved: the IJB metrics to :mod:`sphereface2.metrics.ijb`, the meta-file readers to
:mod:`sphereface2.data.ijb_meta`; this module keeps the old import path working."""

from sphereface2.data.ijb_meta import *  # noqa: F403
from sphereface2.data.ijb_meta import IJBFormatError, IJBMeta, read_ijb_meta  # noqa: F401
from sphereface2.metrics.ijb import *  # noqa: F403
from sphereface2.metrics.ijb import (  # noqa: F401
    IJB_FARS,
    IJB_FPIRS,
    IJB_RANKS,
    Device,
    TpirConvention,
    _pair_dots_torch,
    exact_ceil,
)
