"""Export a backbone to ONNX and check it against PyTorch with onnxruntime.

Exporter: ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based exporter; it
traces the backbone on the CPU in well under a second and handles every backbone here.
``exporter="dynamo"`` uses the ``torch.export``-based exporter instead (it needs the
``onnxscript`` package, takes seconds even for tiny models, and writes opset >= 18).

The graph has one input ``images`` (batch, 3, H, W) float32, normalised as in training,
and one output ``embeddings`` (batch, d), the raw embedding (no flip, no normalisation).
With ``dynamic_batch`` the batch axis is symbolic. The model config, the pre-processing and
the flip-test recipe are stored in the ONNX metadata.

After writing, the file is loaded with onnxruntime (CPU) and run on seeded random inputs at
two batch sizes; the largest absolute difference from PyTorch is returned, and an
:class:`ExportCheckError` is raised when it exceeds ``atol + rtol * max|output|``.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sphereface2.config import ModelConfig
from sphereface2.export.common import FLIP_TEST, PREPROCESSING, ModelLike, as_torch_model
from sphereface2.models.loading import (
    METADATA_KEY,
    model_config_to_dict,
    require_optional,
)

DEFAULT_OPSET = 17
EXPORTERS = {
    "torchscript": "torch.onnx.export, TorchScript-based (dynamo=False)",
    "dynamo": "torch.onnx.export, torch.export-based (dynamo=True, needs onnxscript)",
}
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


class ExportCheckError(RuntimeError):
    """The exported model's outputs differ from PyTorch's beyond the tolerance."""


def supported_opsets(exporter: str) -> range:
    """The ONNX opsets that torch.onnx writes with ``exporter`` (torch's own limits)."""
    try:
        from torch.onnx import _constants as limits

        low = limits.ONNX_MIN_OPSET
        high_torchscript = limits.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
        high = limits.ONNX_MAX_OPSET
    except (ImportError, AttributeError):  # a private module: fall back to torch 2.x values
        low, high_torchscript, high = 7, 20, 23
    return range(low, high_torchscript + 1) if exporter == "torchscript" else range(18, high + 1)


def check_opset(opset: int, exporter: str) -> None:
    """Raise ValueError naming the supported range unless ``exporter`` writes ``opset``
    (checked before exporting: torch's own refusal comes after a dump of the graph)."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    valid = supported_opsets(exporter)
    if opset not in valid:
        raise ValueError(
            f"the {exporter} exporter writes opset {valid.start} or newer, up to "
            f"{valid.stop - 1}; got opset={opset}"
        )


def _export_torchscript(
    module: torch.nn.Module, example: torch.Tensor, out: Path, opset: int, dynamic: bool
) -> None:
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation, and tracing warns about the
        # backbones' input-size checks (constants for a fixed H x W, which is intended).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            str(out),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _export_dynamo(
    module: torch.nn.Module, example: torch.Tensor, out: Path, opset: int, dynamic: bool
) -> None:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes,
            verbose=False,
        )
    program.save(str(out))


def _add_metadata(path: Path, cfg: ModelConfig, description: str) -> None:
    onnx = require_optional("onnx", "ONNX export")

    proto = onnx.load(str(path))
    entries = {
        METADATA_KEY: json.dumps(model_config_to_dict(cfg)),
        "sphereface2.source": description,
        "sphereface2.preprocessing": PREPROCESSING,
        "sphereface2.flip_test": FLIP_TEST,
    }
    existing = {p.key for p in proto.metadata_props}
    for key, value in entries.items():
        if key not in existing:
            prop = proto.metadata_props.add()
            prop.key, prop.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def check_onnx_against_torch(
    onnx_path: str | os.PathLike,
    module: torch.nn.Module,
    input_size: Sequence[int],
    batch_sizes: Sequence[int] = (2, 5),
    seed: int = 0,
) -> dict[str, Any]:
    """Run the ONNX file (onnxruntime, CPU) and ``module`` on the same seeded random
    inputs at each batch size; returns ``max_abs_diff``, ``max_abs_output`` and the
    shapes the session reports."""
    ort = require_optional("onnxruntime", "checking an ONNX export")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    largest = 0.0
    for batch in batch_sizes:
        x = torch.randn(batch, 3, *input_size, generator=generator)
        with torch.no_grad():
            expected = module(x).float().numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(
                f"{onnx_path}: output shape {got.shape} at batch {batch}, PyTorch gives "
                f"{expected.shape}"
            )
        worst = max(worst, float(np.max(np.abs(got - expected))))
        largest = max(largest, float(np.max(np.abs(expected))))
    return {
        "max_abs_diff": worst,
        "max_abs_output": largest,
        "checked_batch_sizes": list(batch_sizes),
        "input_shape": list(session.get_inputs()[0].shape),
        "output_shape": list(session.get_outputs()[0].shape),
    }


def export_onnx(
    model_or_path: ModelLike,
    out_path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    exporter: Literal["torchscript", "dynamo"] = "torchscript",
    config: ModelConfig | Mapping[str, Any] | None = None,
    average_last: int | None = None,
    check_batch_sizes: Sequence[int] = (2, 5),
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Export a backbone to ONNX, then check it against PyTorch with onnxruntime.

    Args:
        model_or_path: a loaded PyTorch :class:`EmbeddingModel`, a backbone ``nn.Module``
            (with ``config``), or a path that :func:`load_embedding_model` opens.
        out_path: the ``.onnx`` file to write (folders are created).
        opset: ONNX opset (see :func:`supported_opsets`: 7 to 20 with TorchScript, 18 and
            newer with dynamo, in torch 2.x).
        dynamic_batch: make the batch axis symbolic (else the graph is fixed at batch 1).
        exporter: ``"torchscript"`` (default) or ``"dynamo"`` (see the module docstring).
        config: the model config when ``model_or_path`` is a bare module.
        average_last: with a run folder, average its last N checkpoints first.
        check_batch_sizes: batch sizes of the onnxruntime check (batch 1 only when the batch
            is fixed).
        atol, rtol: the check fails when ``max_abs_diff > atol + rtol * max|output|``.
        seed: seed of the random check inputs.

    Returns:
        ``path``, ``opset``, ``exporter``, ``dynamic_batch``, ``input``/``output`` names and
        shapes, ``max_abs_diff``, ``max_abs_output``, ``checked_batch_sizes``,
        ``seconds`` and the library versions.

    Raises:
        ExportCheckError: onnxruntime's outputs differ from PyTorch's beyond the tolerance.
    """
    onnx = require_optional("onnx", "ONNX export")
    onnxruntime = require_optional("onnxruntime", "checking an ONNX export")
    check_opset(opset, exporter)
    if exporter == "dynamo":
        require_optional("onnxscript", "the dynamo ONNX exporter")
    started = time.perf_counter()
    model = as_torch_model(model_or_path, config, average_last)
    # Export a CPU copy in eval mode; the caller's model stays where it is.
    module = copy.deepcopy(model.module).cpu().eval()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    example_batch = 2 if dynamic_batch else 1
    example = torch.randn(example_batch, 3, *model.input_size, generator=torch.Generator())
    export = _export_torchscript if exporter == "torchscript" else _export_dynamo
    export(module, example, out, opset, dynamic_batch)
    _add_metadata(out, model.model_config, model.description)
    sizes = tuple(check_batch_sizes) if dynamic_batch else (1,)
    check = check_onnx_against_torch(out, module, model.input_size, sizes, seed)
    limit = atol + rtol * check["max_abs_output"]
    if not check["max_abs_diff"] <= limit:
        raise ExportCheckError(
            f"{out}: onnxruntime differs from PyTorch by up to {check['max_abs_diff']:.3g} "
            f"(allowed {limit:.3g}) on random inputs at batch sizes {list(sizes)}"
        )
    if dynamic_batch and isinstance(check["input_shape"][0], int):
        raise ExportCheckError(f"{out}: the batch axis was not exported as dynamic")
    return {
        "path": str(out),
        "format": "onnx",
        "opset": opset,
        "exporter": EXPORTERS[exporter],
        "dynamic_batch": dynamic_batch,
        "input": {"name": INPUT_NAME, "shape": check["input_shape"]},
        "output": {"name": OUTPUT_NAME, "shape": check["output_shape"]},
        "max_abs_diff": check["max_abs_diff"],
        "max_abs_output": check["max_abs_output"],
        "checked_batch_sizes": check["checked_batch_sizes"],
        "model": model.description,
        "seconds": round(time.perf_counter() - started, 3),
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
