"""Loss heads: embeddings (B, d) and labels (B,) in, a scalar training loss out.

Every head has the call signature ``head(embeddings, labels, *, return_stats=False)`` and
is built by name with :func:`build_head`. Importing this package registers them all.
"""

from sphereface2.heads.fused_function import fused_sphereface2_loss, fused_sphereface2_loss_sum
from sphereface2.heads.fused_sphereface2 import FusedSphereFace2Head
from sphereface2.heads.margin_softmax import (
    ArcFaceHead,
    CosFaceHead,
    MarginSoftmaxHead,
    NormFaceHead,
    SoftmaxHead,
    SphereFaceHead,
)
from sphereface2.heads.registry import HEADS, build_head
from sphereface2.heads.sphereface2 import SphereFace2Head, sphereface2_loss

__all__ = [
    "HEADS",
    "ArcFaceHead",
    "CosFaceHead",
    "FusedSphereFace2Head",
    "MarginSoftmaxHead",
    "NormFaceHead",
    "SoftmaxHead",
    "SphereFace2Head",
    "SphereFaceHead",
    "build_head",
    "fused_sphereface2_loss",
    "fused_sphereface2_loss_sum",
    "sphereface2_loss",
]
