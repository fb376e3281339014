"""Moved to :mod:`sphereface2.models.run_folder`
(this alias keeps the old import path working)."""

import sys

from sphereface2.models import run_folder as _moved

sys.modules[__name__] = _moved
