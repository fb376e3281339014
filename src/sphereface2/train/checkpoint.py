"""Moved to :mod:`sphereface2.models.checkpoint`
(this alias keeps the old import path working)."""

import sys

from sphereface2.models import checkpoint as _moved

sys.modules[__name__] = _moved
