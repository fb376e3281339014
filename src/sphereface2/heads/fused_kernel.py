"""Moved to :mod:`sphereface2.heads.fused_chunk_loop`
(this alias keeps the old import path working)."""

import sys

from sphereface2.heads import fused_chunk_loop as _moved

sys.modules[__name__] = _moved
