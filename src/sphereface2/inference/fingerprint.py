"""A model's fingerprint: which weights produced a set of embeddings.

A gallery stores the fingerprint of the model that embedded it; a search with another
model would compare embeddings from two different spaces and return confident nonsense,
so it is refused.

What is hashed (SHA-256):

- a PyTorch model: its backbone's state dict after loading, entry by entry in sorted key
  order (key, dtype, shape, raw bytes). So a checkpoint, the ``model.pt`` holding the same
  weights and their safetensors export all share one fingerprint, wherever the files lie,
  while any change of a single weight changes it;
- an ONNX model: the bytes of the ``.onnx`` file (its graph holds the weights, and
  onnxruntime's arithmetic may differ from PyTorch's, so an ONNX export is a model of its
  own).

The model's description (what was loaded, from where) is kept beside the hash for people
to read; it is not compared, since it holds the path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from sphereface2.models.loading import (
    EmbeddingModel,
    OnnxEmbeddingModel,
    TorchEmbeddingModel,
)

TORCH_KIND = "sha256 of the backbone state dict (sorted keys, dtype, shape, bytes)"
ONNX_KIND = "sha256 of the ONNX file"


@dataclass(frozen=True)
class Fingerprint:
    """Attributes:
    sha256: the hex digest.
    kind: what was hashed (:data:`TORCH_KIND` or :data:`ONNX_KIND`).
    description: the model's description (for people; not compared).
    embedding_dim: d.
    input_size: (H, W).
    """

    sha256: str
    kind: str
    description: str
    embedding_dim: int
    input_size: tuple[int, int]

    def matches(self, other: Fingerprint) -> bool:
        """Same weights (and so the same embedding space)."""
        return (self.sha256, self.kind) == (other.sha256, other.kind)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        return out

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> Fingerprint:
        """Read :meth:`to_dict`'s form; errors name ``source`` and the key."""
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: model: expected a mapping, got {raw!r}")
        try:
            size = raw["input_size"]
            return cls(
                sha256=str(raw["sha256"]),
                kind=str(raw["kind"]),
                description=str(raw.get("description", "")),
                embedding_dim=int(raw["embedding_dim"]),
                input_size=(int(size[0]), int(size[1])),
            )
        except KeyError as err:
            raise ValueError(f"{source}: model.{err.args[0]}: missing") from None
        except (TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{source}: model: malformed fingerprint ({err})") from None


def state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over ``module``'s state dict (sorted keys; key, dtype, shape and bytes)."""
    digest = hashlib.sha256()
    state = module.state_dict()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        # viewed as bytes: works for every dtype (numpy has no bfloat16)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def model_fingerprint(model: EmbeddingModel) -> Fingerprint:
    """The fingerprint of a loaded model (see the module docstring)."""
    if isinstance(model, TorchEmbeddingModel):
        sha, kind = state_dict_sha256(model.module), TORCH_KIND
    elif isinstance(model, OnnxEmbeddingModel):
        sha, kind = file_sha256(model.source), ONNX_KIND
    else:
        raise ValueError(f"{model.name}: cannot fingerprint a {type(model).__name__}")
    return Fingerprint(sha, kind, model.description, model.embedding_dim, model.input_size)
