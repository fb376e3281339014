"""Moved to :mod:`sphereface2.models.loading`
(this alias keeps the old import path working)."""

import sys

from sphereface2.models import loading as _moved

sys.modules[__name__] = _moved
