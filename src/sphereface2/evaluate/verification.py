"""Moved to :mod:`sphereface2.metrics.verification`
(this alias keeps the old import path working)."""

import sys

from sphereface2.metrics import verification as _moved

sys.modules[__name__] = _moved
