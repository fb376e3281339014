"""Moved to :mod:`sphereface2.heads.sphereface2_margins`, the one definition of each margin's
value and slope (this alias keeps the old import path working: ``positive_value_and_slope``
and ``negative_value_and_slope``)."""

import sys

from sphereface2.heads import sphereface2_margins as _moved

sys.modules[__name__] = _moved
