"""Moved to :mod:`sphereface2.heads.arg_checks`
(this alias keeps the old import path working)."""

import sys

from sphereface2.heads import arg_checks as _moved

sys.modules[__name__] = _moved
