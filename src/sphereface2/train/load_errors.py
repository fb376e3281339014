"""Moved to :mod:`sphereface2.models.load_errors`
(this alias keeps the old import path working)."""

import sys

from sphereface2.models import load_errors as _moved

sys.modules[__name__] = _moved
