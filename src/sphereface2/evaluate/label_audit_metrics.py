"""Moved to :mod:`sphereface2.metrics.label_audit`
(this alias keeps the old import path working)."""

import sys

from sphereface2.metrics import label_audit as _moved

sys.modules[__name__] = _moved
