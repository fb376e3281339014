"""What every exporter needs: a PyTorch model with its config, whatever was passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from sphereface2.config import ModelConfig
from sphereface2.models.loading import (
    EmbeddingModel,
    TorchEmbeddingModel,
    load_embedding_model,
    model_config_from_dict,
)

#: How the exported models expect their input (written into the exports' metadata).
PREPROCESSING = "RGB float32 NCHW, aligned face crop of the model's input size, (x - 127.5) / 127.5"
FLIP_TEST = (
    "evaluation protocol: embed the image and its horizontal flip and sum the two raw "
    "embeddings, then L2-normalise"
)

ModelLike = EmbeddingModel | nn.Module | str | os.PathLike


def as_torch_model(
    model: ModelLike,
    config: ModelConfig | Mapping[str, Any] | None = None,
    average_last: int | None = None,
) -> TorchEmbeddingModel:
    """A :class:`TorchEmbeddingModel` from a loaded model, a backbone module (with its
    ``config``) or a path (see :func:`load_embedding_model`, loaded on the CPU).

    Raises:
        ValueError: an ONNX model (nothing to export from), or a module without a config.
    """
    if isinstance(model, str | os.PathLike):
        model = load_embedding_model(model, "cpu", average_last)
    if isinstance(model, TorchEmbeddingModel):
        if config is not None:
            cfg = _config(config)
            if cfg != model.model_config:
                raise ValueError(
                    f"{model.name}: the config given ({cfg}) differs from the model's own "
                    f"({model.model_config})"
                )
        return model
    if isinstance(model, EmbeddingModel):
        raise ValueError(
            f"{model.name}: is not a PyTorch model ({model.description}); export needs a "
            "checkpoint, a run folder or a safetensors export"
        )
    if isinstance(model, nn.Module):
        if config is None:
            raise ValueError(
                "exporting a bare nn.Module needs its model config (backbone, embedding_dim, "
                "input_size, options) to rebuild it later"
            )
        cfg = _config(config)
        return TorchEmbeddingModel(model, cfg, "cpu", name=cfg.backbone, source="<module>")
    raise TypeError(f"cannot export a {type(model).__name__}; pass a model or a path")


def _config(config: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    return model_config_from_dict(config, "the model config given")
