"""ONNX export of the arcface_torch families (IResNet, MobileFaceNet): onnxruntime matches
PyTorch at several batch sizes, as the SFNet export in test_onnx_export.py does.

BatchNorm statistics and PReLU slopes are randomised first: at their initial values (mean
0, variance 1, scale 1, slope 0.25) an export that dropped or mis-folded them could pass.
IResNet's N(0, 0.1) conv init gives embeddings in the thousands, so differences are judged
relative to the largest output (float32 rounding over 18 layers is about 1e-6 of it).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sphereface2.backbones import build_backbone
from sphereface2.config import ModelConfig
from sphereface2.evaluate.model_loading import OnnxEmbeddingModel, load_embedding_model
from sphereface2.export.onnx_export import export_onnx

RTOL = 1e-5  # of the largest |output|; tighter than export_onnx's default check
ATOL = 1e-4

CASES = {
    # IResNet-18 at its full depth, quarter width and 32x32 (a 2x2 final map).
    "iresnet18": ModelConfig("iresnet18", 32, (32, 32), {"width": 0.25}),
    # MobileFaceNet at its published size: grouped and depthwise convs, the 7x7 GDC.
    "mobilefacenet": ModelConfig("mobilefacenet", 512, (112, 112), {}),
}


def _randomise_norms(net: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            elif isinstance(module, torch.nn.PReLU):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 0.5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_matches_pytorch(name: str, tmp_path) -> None:
    cfg = CASES[name]
    torch.manual_seed(0)
    net = build_backbone(
        cfg.backbone, embedding_dim=cfg.embedding_dim, input_size=cfg.input_size, **cfg.options
    ).eval()
    _randomise_norms(net, seed=1)
    result = export_onnx(net, tmp_path / f"{name}.onnx", config=cfg)
    assert result["checked_batch_sizes"] == [2, 5]
    assert result["max_abs_diff"] <= ATOL + RTOL * result["max_abs_output"]
    assert result["max_abs_output"] > 0.1  # the check compared real signals
    assert isinstance(result["input"]["shape"][0], str)  # symbolic batch
    assert result["input"]["shape"][1:] == [3, *cfg.input_size]

    # Independently of the built-in check: other batch sizes give the module's embeddings.
    onnx_model = load_embedding_model(tmp_path / f"{name}.onnx")
    assert isinstance(onnx_model, OnnxEmbeddingModel)
    assert onnx_model.embedding_dim == cfg.embedding_dim and name in onnx_model.description
    generator = torch.Generator().manual_seed(2)
    for batch in (1, 3):
        images = torch.randn(batch, 3, *cfg.input_size, generator=generator)
        with torch.no_grad():
            expected = net(images).numpy()
        got = onnx_model.embed(images)
        assert got.shape == (batch, cfg.embedding_dim)
        assert np.abs(got - expected).max() <= ATOL + RTOL * np.abs(expected).max()
