"""What every head built on unit-length class proxies shares.

The proxies are the rows of ``weight`` (num_classes, embedding_dim). As in the official
OpenSphere code they are Xavier-normal initialised, and re-projected to unit length in place,
without gradient, at the start of every forward pass; the embeddings are normalised with
gradient. The loss is therefore a function of the cosines only.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from sphereface2.heads.arg_checks import check_batch, check_sizes

# Normalisation never divides by less than this (an all-zero embedding stays zero).
NORM_EPS = 1e-12


def cosines(embeddings: Tensor, weight: Tensor) -> Tensor:
    """(B, K) cosines between the embeddings and the rows of ``weight`` (assumed unit length).

    Embeddings are cast to the proxies' dtype and normalised with gradient. Cosines from a
    half-precision matmul (autocast) are promoted to float32, so that the margin maths
    (``arccos`` near +-1, powers, softplus) never runs in half precision.
    """
    x_hat = F.normalize(embeddings.to(weight.dtype), dim=1, eps=NORM_EPS)
    cos = x_hat @ weight.t()
    if cos.dtype in (torch.float16, torch.bfloat16):
        cos = cos.float()
    return cos


@torch.no_grad()
def renormalise_(weight: Tensor) -> None:
    """Scale every row of ``weight`` to unit length, in place and outside autograd.

    Writes through ``.data`` so the parameter's autograd version counter is not bumped:
    two forward passes before one backward (two views of a batch, say) stay legal, and
    after the first pass the rows are already unit length so later passes change them
    only by rounding.
    """
    data = weight.data
    data.div_(data.norm(dim=1, keepdim=True).clamp_min(NORM_EPS))


def cosine_stats(cos: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Detached mean cosine to each sample's own proxy and to all the other proxies."""
    with torch.no_grad():
        cos = cos.detach()
        cos_y = cos.gather(1, labels.long().unsqueeze(1))
        batch, classes = cos.shape
        neg_mean = (cos.sum() - cos_y.sum()) / (batch * (classes - 1))
        return {"pos_cos": cos_y.mean(), "neg_cos": neg_mean}


class ProxyHead(nn.Module):
    """Base of the heads that score normalised embeddings against unit class proxies."""

    head_name = "head"

    def __init__(self, num_classes: int, embedding_dim: int, *, validate: bool = True) -> None:
        super().__init__()
        self.num_classes, self.embedding_dim = check_sizes(
            self.head_name, num_classes, embedding_dim
        )
        self.validate = bool(validate)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        nn.init.xavier_normal_(self.weight)
        renormalise_(self.weight)

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> None:
        """Check a batch against this head's sizes (values too when ``validate``)."""
        check_batch(
            self.head_name,
            embeddings,
            labels,
            num_classes=self.num_classes,
            embedding_dim=self.embedding_dim,
            check_values=self.validate,
        )

    def compute_cosines(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Check the batch, re-project the proxies and return the (B, K) cosines."""
        self.check_inputs(embeddings, labels)
        renormalise_(self.weight)
        return cosines(embeddings, self.weight)
