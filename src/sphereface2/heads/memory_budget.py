"""How many classes the fused head scores at once: a chunk size from a memory budget.

The fused SphereFace2 pass keeps a few (batch, chunk) work buffers alive at a time; the
budget bounds their total size. Small chunks keep the buffers in the CPU cache but pay
more per-chunk overhead (short matrix products, Python dispatch); the default was tuned on
a 2-core AVX-512 machine with B = 256, d = 512 (see benchmarks/head_speed.py).
"""

from __future__ import annotations

DEFAULT_BUDGET_BYTES = 4 * 2**20
"""Default bytes for the fused pass's (batch, chunk) work buffers (fits a 2 MiB L2 pair)."""

MIN_CHUNK = 256
"""The budget never shrinks a chunk below this many classes (unless K itself is smaller)."""

WORK_BUFFERS = 4
"""(batch, chunk) buffers in the working dtype: cosines/softplus, q/sigmoid, q^(t-1), logits."""


def bytes_per_class(
    batch: int, work_itemsize: int, matmul_itemsize: int, embedding_dim: int
) -> int:
    """Bytes of temporaries that one class (one chunk column) costs in the fused pass.

    ``WORK_BUFFERS`` columns of ``batch`` entries in the working dtype; when the matrix
    products run in another (autocast) dtype, also the low-precision cosines and cosine
    gradients (two columns) and the cast proxy row.
    """
    total = WORK_BUFFERS * batch * work_itemsize
    if matmul_itemsize != work_itemsize:
        total += 2 * batch * matmul_itemsize + embedding_dim * matmul_itemsize
    return total


def choose_chunk_size(
    num_classes: int,
    batch: int,
    *,
    embedding_dim: int,
    work_itemsize: int = 4,
    matmul_itemsize: int | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    chunk_size: int | None = None,
) -> int:
    """The number of classes per chunk: ``chunk_size`` if given, else from ``budget_bytes``.

    An explicit ``chunk_size`` must be a positive int and is capped at ``num_classes``. The
    budgeted size is clipped to [min(MIN_CHUNK, K), K].
    """
    if num_classes < 1 or batch < 1:
        raise ValueError(f"need num_classes >= 1 and batch >= 1, got {num_classes} and {batch}")
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        return min(chunk_size, num_classes)
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
        raise ValueError(f"budget_bytes must be a positive int, got {budget_bytes!r}")
    per_class = bytes_per_class(
        batch, work_itemsize, matmul_itemsize or work_itemsize, embedding_dim
    )
    budgeted = budget_bytes // per_class
    return max(min(MIN_CHUNK, num_classes), min(budgeted, num_classes))
