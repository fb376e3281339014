"""Export backbone weights as safetensors plus the config that rebuilds the model.

``out_dir/model.safetensors`` holds the backbone's state dict (no pickle, loadable from any
framework) with the model config also in its metadata; ``out_dir/config.json`` holds
``{"format": "sphereface2-safetensors", "version": 1, "model": {backbone, embedding_dim,
input_size, options}, ...}``. :func:`sphereface2.models.loading.load_embedding_model`
opens either the folder or the ``.safetensors`` file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sphereface2.config import ModelConfig
from sphereface2.export.common import FLIP_TEST, PREPROCESSING, ModelLike, as_torch_model
from sphereface2.models.loading import (
    CONFIG_FILE,
    METADATA_KEY,
    SAFETENSORS_FORMAT,
    SAFETENSORS_VERSION,
    WEIGHTS_FILE,
    model_config_to_dict,
    require_optional,
)


def export_safetensors(
    model: ModelLike,
    out_dir: str | os.PathLike,
    config: ModelConfig | Mapping[str, Any] | None = None,
    average_last: int | None = None,
) -> dict[str, Any]:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir`` (created).

    Args:
        model: a loaded PyTorch :class:`EmbeddingModel`, a backbone ``nn.Module`` (then
            ``config`` is required), or a path that ``load_embedding_model`` opens.
        out_dir: the export folder.
        config: the model config (backbone name, embedding_dim, input_size, options).
        average_last: with a run folder, average its last N checkpoints first.

    Returns:
        ``weights`` and ``config`` paths, ``tensors``, ``parameters`` and the model config.
    """
    save_file = require_optional("safetensors.torch", "safetensors export").save_file
    torch_model = as_torch_model(model, config, average_last)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Own, contiguous CPU copies: safetensors refuses tensors that share storage.
    state = {
        key: value.detach().to("cpu").clone().contiguous()
        for key, value in torch_model.module.state_dict().items()
    }
    model_dict = model_config_to_dict(torch_model.model_config)
    weights = out / WEIGHTS_FILE
    save_file(
        state,
        str(weights),
        metadata={METADATA_KEY: json.dumps(model_dict), "format": SAFETENSORS_FORMAT},
    )
    config_path = out / CONFIG_FILE
    document = {
        "format": SAFETENSORS_FORMAT,
        "version": SAFETENSORS_VERSION,
        "model": model_dict,
        "source": torch_model.description,
        "preprocessing": PREPROCESSING,
        "flip_test": FLIP_TEST,
    }
    config_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    parameters = sum(int(t.numel()) for t in state.values() if torch.is_floating_point(t))
    return {
        "format": "safetensors",
        "weights": str(weights),
        "config": str(config_path),
        "tensors": len(state),
        "parameters": parameters,
        "model": model_dict,
    }
