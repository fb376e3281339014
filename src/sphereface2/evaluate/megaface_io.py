"""Moved to :mod:`sphereface2.data.megaface_features`
(this alias keeps the old import path working)."""

import sys

from sphereface2.data import megaface_features as _moved

sys.modules[__name__] = _moved
