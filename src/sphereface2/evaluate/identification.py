"""Moved to :mod:`sphereface2.metrics.megaface`
(this alias keeps the old import path working)."""

import sys

from sphereface2.metrics import megaface as _moved

sys.modules[__name__] = _moved
