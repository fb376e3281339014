"""IJB-B / IJB-C metrics on per-image features (no images, no models), in one import path.

1:1 template verification (template pooling, pair scoring, TAR at FAR) is
:mod:`sphereface2.metrics.ijb_verification`; 1:N identification (top-k, TPIR at FPIR, merged
galleries) is :mod:`sphereface2.metrics.ijb_identification`. This module re-exports both, so
``sphereface2.metrics.ijb`` keeps every name it had before the split.
"""

from sphereface2.metrics.ijb_identification import *  # noqa: F403
from sphereface2.metrics.ijb_identification import (  # noqa: F401
    IJB_FPIRS,
    IJB_RANKS,
    TpirConvention,
    _as_tensor_rows,
    _check_ranks_fpirs,
    _tpir_nonmated_max,
    _tpir_opensphere,
)
from sphereface2.metrics.ijb_verification import *  # noqa: F403
from sphereface2.metrics.ijb_verification import (  # noqa: F401
    IJB_FARS,
    Device,
    _check_unique_ids,
    _id_array,
    _pair_dots_torch,
    _TemplateIndex,
)
