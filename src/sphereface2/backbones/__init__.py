"""Backbones: images (B, 3, H, W) -> embeddings (B, d), built by name.

    >>> from sphereface2.backbones import build_backbone
    >>> net = build_backbone("sfnet20", embedding_dim=512, batch_norm=False)

Names: sfnet4/10/20/36/64 (the paper's SFNets, optional BN), iresnet18/34/50/100/200 and
mobilefacenet (InsightFace arcface_torch's IResNets and MobileFaceNet, same parameter names).
"""

from sphereface2.backbones import (  # noqa: F401  (importing registers the names)
    iresnet,
    mobilefacenet,
    sfnet,
)
from sphereface2.backbones.complexity import count_macs, count_parameters
from sphereface2.backbones.iresnet import IBasicBlock, IResNet
from sphereface2.backbones.mobilefacenet import MobileFaceNet
from sphereface2.backbones.registry import BACKBONES, backbone_options, build_backbone
from sphereface2.backbones.sfnet import SFBlock, SFNet, StageConv

__all__ = [
    "BACKBONES",
    "IBasicBlock",
    "IResNet",
    "MobileFaceNet",
    "SFBlock",
    "SFNet",
    "StageConv",
    "backbone_options",
    "build_backbone",
    "count_macs",
    "count_parameters",
]
