"""Open a trained model for evaluation, whatever form it was saved in.

    >>> model = load_embedding_model("runs/sf2", average_last=5)
    >>> model.embed(images)            # (B, 3, H, W) normalised floats -> (B, d) float32

Accepted ``path``:

- a training checkpoint ``ckpt_*.pt`` or the evaluation file ``model.pt`` written by the
  trainer (read with ``torch.load(weights_only=True)``; the backbone is rebuilt from the
  config stored inside);
- a run folder: its ``model.pt`` if there is one, else its newest checkpoint; with
  ``average_last=N`` the element-wise mean of its last N checkpoints (the paper reports
  the average of the last five);
- a safetensors export (``model.safetensors``, or the folder holding it) with its
  ``config.json`` (or ``config.yaml``) beside it, or the config stored in the file's own
  metadata;
- an ONNX file (``model.onnx``, or the folder holding it), run with onnxruntime.

Everything returned is an :class:`EmbeddingModel`: ``embed(images) -> (B, d) float32``
plus ``input_size``, ``embedding_dim``, ``name`` and ``description``.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sphereface2.config import ConfigError, ModelConfig, TrainConfig, config_from_dict
from sphereface2.heads import build_head
from sphereface2.models.checkpoint import (
    CHECKPOINT_FORMAT,
    MODEL_FORMAT,
    average_state_dicts,
    list_checkpoints,
    load_file,
)
from sphereface2.models.model_config import (
    build_backbone_from_config,
    model_config_from_dict,
    model_config_to_dict,  # noqa: F401  (re-exported for the old import path)
)

#: ``format`` of the config.json written next to a safetensors export.
SAFETENSORS_FORMAT = "sphereface2-safetensors"
SAFETENSORS_VERSION = 1
#: File names inside an export folder.
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
ONNX_FILE = "model.onnx"
#: Key of the model config in safetensors / ONNX metadata.
METADATA_KEY = "sphereface2.model"

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
_ACCEPTED = (
    "a checkpoint (.pt), a run folder, a safetensors export (.safetensors with config.json) "
    "or an ONNX file (.onnx)"
)


def require_optional(module: str, purpose: str) -> Any:
    """Import an optional dependency, or raise RuntimeError saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        raise RuntimeError(
            f"{purpose} needs the {package!r} package: pip install {package} "
            "(or the project's 'onnx' extra)"
        ) from None


def _load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).strip().splitlines()[:3]]
        raise ValueError(
            f"{source}: its weights do not fit the configured backbone: {' '.join(lines)}"
        ) from None


# --------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------


class EmbeddingModel(abc.ABC):
    """Anything that maps face images to embeddings.

    Attributes:
        name: short name for tables (a run folder's or file's name).
        description: one line saying what was loaded and from where.
        input_size: (H, W) the images must have.
        embedding_dim: d, the embedding size.
        source: the path it was loaded from.
    """

    name: str
    description: str
    input_size: tuple[int, int]
    embedding_dim: int
    source: str

    @abc.abstractmethod
    def _forward(self, images: torch.Tensor) -> np.ndarray:
        """Embeddings of a checked batch."""

    def embed(self, images: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) float images normalised as in training -> (B, d) float32 array."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{self.name}: expected images of shape (B, 3, H, W), got {tuple(images.shape)}"
            )
        got = (int(images.shape[2]), int(images.shape[3]))
        if got != self.input_size:
            raise ValueError(
                f"{self.name}: expects {self.input_size[0]}x{self.input_size[1]} images, got "
                f"{got[0]}x{got[1]}; open the data with the model's input_size"
            )
        out = self._forward(images)
        return np.ascontiguousarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"


class TorchEmbeddingModel(EmbeddingModel):
    """A PyTorch backbone in eval mode on one device."""

    def __init__(
        self,
        module: nn.Module,
        model_config: ModelConfig,
        device: str | torch.device = "cpu",
        name: str = "model",
        description: str | None = None,
        source: str = "",
    ) -> None:
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.model_config = model_config
        self.input_size = tuple(model_config.input_size)  # type: ignore[assignment]
        self.embedding_dim = model_config.embedding_dim
        self.name = name
        self.source = source
        self.description = description or (
            f"{model_config.backbone} ({self.embedding_dim}-d, "
            f"{self.input_size[0]}x{self.input_size[1]})"
        )

    @torch.no_grad()
    def _forward(self, images: torch.Tensor) -> np.ndarray:
        out = self.module(images.to(self.device, dtype=torch.float32))
        return out.float().cpu().numpy()


class OnnxEmbeddingModel(EmbeddingModel):
    """An ONNX model run by onnxruntime (CPU provider unless CUDA is asked for and present).

    A model exported with a fixed batch size is fed in chunks of that size (the last one
    zero-padded), so it still accepts any batch.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        ort = require_optional("onnxruntime", "running an ONNX model")
        path = str(path)
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError(
                    f"{path}: CUDA was asked for but this onnxruntime has no CUDA provider "
                    f"(available: {', '.join(ort.get_available_providers())})"
                )
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        try:
            self.session = ort.InferenceSession(path, options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: not a loadable ONNX model ({err})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ValueError(
                f"{path}: expected one image input and an embedding output, got "
                f"{len(inputs)} input(s) and {len(outputs)} output(s)"
            )
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] != 3 or not all(isinstance(s, int) for s in shape[2:]):
            raise ValueError(
                f"{path}: input {inputs[0].name!r} has shape {shape}; expected "
                "(batch, 3, H, W) with fixed H and W"
            )
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) else None
        self.input_size = (int(shape[2]), int(shape[3]))
        out_shape = outputs[0].shape
        dim = out_shape[-1] if len(out_shape) == 2 and isinstance(out_shape[-1], int) else None
        self.source = path
        self.name = Path(path).stem if Path(path).name != ONNX_FILE else Path(path).parent.name
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        backbone = "ONNX model"
        if meta:
            with contextlib.suppress(ValueError, AttributeError):  # a foreign entry
                backbone = json.loads(meta).get("backbone", backbone)
        if dim is None:  # the output size is not in the graph: find it by running once
            probe = np.zeros((self.fixed_batch or 1, 3, *self.input_size), np.float32)
            dim = int(self.session.run([self.output_name], {self.input_name: probe})[0].shape[-1])
        self.embedding_dim = int(dim)
        provider = self.session.get_providers()[0]
        batch = f"batch {self.fixed_batch}" if self.fixed_batch else "dynamic batch"
        self.description = (
            f"{backbone} ({self.embedding_dim}-d, {self.input_size[0]}x{self.input_size[1]}) "
            f"from {path} (onnxruntime {ort.__version__}, {provider}, {batch})"
        )

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def _forward(self, images: torch.Tensor) -> np.ndarray:
        x = images.detach().cpu().float().numpy()
        if self.fixed_batch is None:
            return self._run(x)
        size = self.fixed_batch
        chunks = []
        for start in range(0, x.shape[0], size):
            part = x[start : start + size]
            real = part.shape[0]
            if real < size:
                part = np.concatenate([part, np.zeros((size - real, *part.shape[1:]), part.dtype)])
            chunks.append(self._run(part)[:real])
        return np.concatenate(chunks)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _stored_model_config(data: Mapping[str, Any], path: Path) -> ModelConfig:
    config = data.get("config")
    if not isinstance(config, Mapping) or "model" not in config:
        raise ValueError(
            f"{path}: holds no training config (config.model); cannot tell which backbone to build"
        )
    return model_config_from_dict(config["model"], f"{path} (its stored config)")


def _weights_of(data: Mapping[str, Any], path: Path) -> Mapping[str, torch.Tensor]:
    weights = data.get("backbone")
    if not isinstance(weights, Mapping):
        raise ValueError(f"{path}: holds no backbone weights (key 'backbone')")
    return weights


def _describe_iterations(data: Mapping[str, Any]) -> str:
    averaged = data.get("averaged_iterations")
    if isinstance(averaged, list) and len(averaged) > 1:
        return f"average of iterations {averaged}"
    if data.get("iteration") is not None:
        return f"iteration {data['iteration']}"
    return "weights"


def _torch_model(
    cfg: ModelConfig,
    weights: Mapping[str, torch.Tensor],
    source: Path,
    device: str | torch.device,
    name: str,
    what: str,
) -> TorchEmbeddingModel:
    module = build_backbone_from_config(cfg, str(source))
    _load_weights(module, weights, str(source))
    description = (
        f"{cfg.backbone} ({cfg.embedding_dim}-d, {cfg.input_size[0]}x{cfg.input_size[1]}), "
        f"{what} from {source}"
    )
    return TorchEmbeddingModel(module, cfg, device, name, description, str(source))


def _run_name(path: Path) -> str:
    run = find_run_folder(path)
    return run.name if run is not None else path.stem


def _load_checkpoint_file(path: Path, device: str | torch.device) -> TorchEmbeddingModel:
    # only the backbone embeds: a multi-process checkpoint's head shards stay on disk
    data = load_file(path, (CHECKPOINT_FORMAT, MODEL_FORMAT), merge_shards=False)
    cfg = _stored_model_config(data, path)
    return _torch_model(
        cfg, _weights_of(data, path), path, device, _run_name(path), _describe_iterations(data)
    )


def _load_run_folder(
    run: Path, device: str | torch.device, average_last: int | None
) -> TorchEmbeddingModel:
    found = list_checkpoints(run)
    if average_last is None:
        if (run / "model.pt").is_file():
            return _load_checkpoint_file(run / "model.pt", device)
        if not found:
            raise FileNotFoundError(f"{run}: run folder has neither model.pt nor checkpoints/")
        return _load_checkpoint_file(found[-1][1], device)
    if average_last < 1:
        raise ValueError(f"average_last must be >= 1, got {average_last}")
    if len(found) < average_last:
        raise ValueError(
            f"{run}: asked to average the last {average_last} checkpoints but the run has "
            f"{len(found)} ({[it for it, _ in found]})"
        )
    chosen = found[-average_last:]
    weights, names, last = [], [], None
    for _, path in chosen:
        last = load_file(path, (CHECKPOINT_FORMAT, MODEL_FORMAT), merge_shards=False)
        weights.append(_weights_of(last, path))
        names.append(str(path))
    assert last is not None
    cfg = _stored_model_config(last, chosen[-1][1])
    averaged = average_state_dicts(weights, names)
    iterations = [it for it, _ in chosen]
    what = (
        f"average of iterations {iterations}" if len(chosen) > 1 else f"iteration {iterations[0]}"
    )
    return _torch_model(cfg, averaged, run, device, run.name, what)


def _parse_config_text(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: invalid JSON: {err}") from None
    from sphereface2.config import parse_yaml

    return parse_yaml(text, str(path))


def _model_section(raw: Any, source: str) -> ModelConfig:
    """The model config inside an export config, a training config, or a bare model config."""
    if isinstance(raw, Mapping):
        if raw.get("format") == SAFETENSORS_FORMAT:
            if raw.get("version") != SAFETENSORS_VERSION:
                raise ValueError(
                    f"{source}: {SAFETENSORS_FORMAT} version {raw.get('version')!r} is not "
                    f"supported (this sphereface2 reads version {SAFETENSORS_VERSION})"
                )
            return model_config_from_dict(raw.get("model"), source)
        if isinstance(raw.get("model"), Mapping):
            return model_config_from_dict(raw["model"], source)
    return model_config_from_dict(raw, source)


def _load_safetensors(path: Path, device: str | torch.device) -> TorchEmbeddingModel:
    safetensors = require_optional("safetensors", "reading safetensors weights")
    load_file = require_optional("safetensors.torch", "reading safetensors weights").load_file
    safe_open, SafetensorError = safetensors.safe_open, safetensors.SafetensorError

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        weights = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    for name in (CONFIG_FILE, "config.yaml", "config.yml"):
        config_path = path.parent / name
        if config_path.is_file():
            cfg = _model_section(_parse_config_text(config_path), str(config_path))
            break
    else:
        if METADATA_KEY not in metadata:
            raise FileNotFoundError(
                f"{path}: no {CONFIG_FILE} (or config.yaml) beside it and no model config in "
                "its metadata; cannot tell which backbone to build"
            )
        try:
            raw = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: metadata {METADATA_KEY!r} is not JSON: {err}") from None
        cfg = _model_section(raw, f"{path} (metadata)")
    name = path.parent.name if path.name == WEIGHTS_FILE else path.stem
    return _torch_model(cfg, weights, path, device, name, "safetensors export")


def find_run_folder(path: str | os.PathLike) -> Path | None:
    """The training run folder that ``path`` is or lies in (``run/``, ``run/model.pt``,
    ``run/checkpoints/ckpt_*.pt``), or None."""
    p = Path(path)

    def is_run(folder: Path) -> bool:
        return (folder / "checkpoints").is_dir() or (folder / "model.pt").is_file()

    if p.is_dir():
        return p if is_run(p) else None
    parent = p.parent
    if parent.name == "checkpoints" and is_run(parent.parent):
        return parent.parent
    if (parent / "config.yaml").is_file() and is_run(parent):
        return parent
    return None


def load_embedding_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", average_last: int | None = None
) -> EmbeddingModel:
    """Open a model saved in any supported form (see the module docstring).

    Args:
        path: checkpoint file, run folder, safetensors export or ONNX file.
        device: ``cpu``, ``cuda``, ``cuda:N`` (ONNX models use onnxruntime's CPU provider
            unless CUDA is asked for).
        average_last: for a run folder: average its last N checkpoints (None: ``model.pt``
            if present, else the newest checkpoint).

    Raises:
        FileNotFoundError: nothing at ``path`` (or a run folder without weights).
        ValueError: an unknown file type, or a file that is not what its name says
            (the message names the file).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model not found: {p} (expected {_ACCEPTED})")
    if isinstance(device, str) and device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available")
    run = find_run_folder(p) if p.is_dir() else None
    if average_last is not None and run is None:
        raise ValueError(
            f"{p}: average_last (--average-last) needs a run folder with checkpoints/, "
            "not a single model file"
        )
    if p.is_dir():
        if run is not None:
            return _load_run_folder(run, device, average_last)
        if (p / WEIGHTS_FILE).is_file():
            return _load_safetensors(p / WEIGHTS_FILE, device)
        if (p / ONNX_FILE).is_file():
            return OnnxEmbeddingModel(p / ONNX_FILE, device)
        raise ValueError(
            f"{p}: folder holds no checkpoints/, model.pt, {WEIGHTS_FILE} or {ONNX_FILE}"
        )
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return OnnxEmbeddingModel(p, device)
    if suffix == ".safetensors":
        return _load_safetensors(p, device)
    if suffix in CHECKPOINT_SUFFIXES:
        return _load_checkpoint_file(p, device)
    raise ValueError(
        f"{p}: unknown model file type {suffix or '(no suffix)'!r}; expected {_ACCEPTED}"
    )


# --------------------------------------------------------------------------------------
# The trained modules themselves (backbone and head), e.g. for fine-tuning or audits
# --------------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """A rebuilt model: the backbone in eval mode, its head, and where they came from."""

    backbone: nn.Module
    head: nn.Module
    config: TrainConfig
    iteration: int
    averaged_iterations: list[int]
    source: Path


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Load ``model.pt`` (averaged weights) or a training checkpoint and rebuild the modules.

    A run folder is accepted too: its ``model.pt``. Errors name the file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    data = load_file(path, (MODEL_FORMAT, CHECKPOINT_FORMAT), map_location="cpu")
    try:
        cfg = config_from_dict(data.get("config"), f"{path} (its stored config)")
    except ConfigError as err:
        raise ValueError(str(err)) from None
    num_classes = _num_classes(data, path)
    backbone = build_backbone_from_config(cfg.model)
    head = build_head(
        cfg.head.name,
        num_classes=num_classes,
        embedding_dim=cfg.model.embedding_dim,
        **cfg.head.params,
    )
    for name, module in (("backbone", backbone), ("head", head)):
        try:
            module.load_state_dict(data[name])
        except (KeyError, RuntimeError) as err:
            raise ValueError(
                f"{path}: its {name} weights do not fit the stored config: {err}"
            ) from None
    backbone.to(device).eval()
    head.to(device).eval()
    return TrainedModel(
        backbone=backbone,
        head=head,
        config=cfg,
        iteration=int(data["iteration"]),
        averaged_iterations=list(data.get("averaged_iterations", [int(data["iteration"])])),
        source=path,
    )


def _num_classes(data: dict[str, Any], path: Path) -> int:
    if "num_classes" in data:
        return int(data["num_classes"])
    if "data" in data and "num_classes" in data["data"]:
        return int(data["data"]["num_classes"])
    raise ValueError(f"{path}: does not record the number of classes")
