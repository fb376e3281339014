"""Moved to :mod:`sphereface2.models.sharded_checkpoint`
(this alias keeps the old import path working)."""

import sys

from sphereface2.models import sharded_checkpoint as _moved

sys.modules[__name__] = _moved
