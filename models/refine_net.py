"""Multi-path RefineNet: Lin, Milan, Shen and Reid, "RefineNet: Multi-Path
Refinement Networks for High-Resolution Semantic Segmentation", CVPR 2017
(arXiv:1611.06612).

The paper's 4-cascaded RefineNet on ResNet-101: one RefineNet block per
backbone stage (strides 32, 16, 8, 4), coarsest first, each block refining
its stage's features with the previous block's output. A block (Sec. 3.2) is
- two residual conv units (RCU: ReLU, 3x3 conv, ReLU, 3x3 conv, identity
  shortcut; no BatchNorm, as in the paper) on each input path,
- multi-resolution fusion: a 3x3 conv per path to the smallest width,
  bilinear upsampling to the finest resolution, sum (skipped with one input),
- chained residual pooling: a ReLU, then a chain of pooling blocks (5x5 max
  pool at stride 1, 3x3 conv), each block's output added to the sum; two
  blocks as the paper's text says (`pooling_blocks`; 4 gives 118.0M
  parameters on ResNet-101, the figure usually quoted for RefineNet-101,
  against 109.8M with 2),
- one RCU as output convolution.
Path widths are 512 for the coarsest path (RefineNet-4) and 256 for the others
(`features`, the coarsest doubled). Two more RCUs and a 1x1 conv give the
stride-4 logits, bilinearly upsampled to the input size, so any H x W works.

Choices where the paper leaves room: a 3x3 conv (no bias) first brings each
backbone map to its path width, which the identity shortcuts of the RCUs
require; convs inside the RCUs have biases (there is no BN after them); the
fusion and pooling convs have none. The block works on any backbone that
returns maps at several strides, so VGG backbones can be used too.
"""
from __future__ import annotations

import torch
from torch import nn

from .backbones import Backbone, build_backbone
from .layers import resize


def conv3x3(in_channels: int, out_channels: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            conv3x3(channels, channels, bias=True),
            nn.ReLU(inplace=True),
            conv3x3(channels, channels, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ChainedResidualPooling(nn.Module):
    def __init__(self, channels: int, blocks: int = 2) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(5, stride=1, padding=2), conv3x3(channels, channels))
            for _ in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        total = path = x
        for block in self.blocks:
            path = block(path)
            total = total + path
        return total


class RefineNetBlock(nn.Module):
    """Fuses input paths (finest first) into one map of `out_channels` at the finest resolution."""

    def __init__(self, in_channels: list[int], out_channels: int, pooling_blocks: int = 2) -> None:
        super().__init__()
        self.rcus = nn.ModuleList(
            nn.Sequential(ResidualConvUnit(c), ResidualConvUnit(c)) for c in in_channels
        )
        if len(in_channels) > 1:
            self.fusion = nn.ModuleList(conv3x3(c, out_channels) for c in in_channels)
        else:
            if in_channels[0] != out_channels:
                raise ValueError("a single-path RefineNet block keeps its width")
            self.fusion = None
        self.pooling = ChainedResidualPooling(out_channels, pooling_blocks)
        self.output = ResidualConvUnit(out_channels)

    def forward(self, *paths: torch.Tensor) -> torch.Tensor:
        paths = [rcu(p) for rcu, p in zip(self.rcus, paths)]
        if self.fusion is None:
            x = paths[0]
        else:
            size = paths[0].shape[-2:]
            x = sum(resize(conv(p), size) for conv, p in zip(self.fusion, paths))
        return self.output(self.pooling(x))


class RefineNet(nn.Module):
    def __init__(self, backbone: Backbone, num_classes: int, features: int = 256,
                 pooling_blocks: int = 2) -> None:
        super().__init__()
        self.backbone = backbone
        stages = len(backbone.channels)
        widths = [features] * (stages - 1) + [2 * features]
        self.adapt = nn.ModuleList(conv3x3(c, w) for c, w in zip(backbone.channels, widths))
        # blocks[i] refines stage i; the coarsest block has no coarser input.
        self.blocks = nn.ModuleList(
            RefineNetBlock(widths[i:i + 2], widths[i], pooling_blocks) for i in range(stages)
        )
        self.classifier = nn.Sequential(
            ResidualConvUnit(features),
            ResidualConvUnit(features),
            nn.Conv2d(features, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = [adapt(f) for adapt, f in zip(self.adapt, self.backbone(x))]
        y = self.blocks[-1](features[-1])
        for block, f in zip(reversed(self.blocks[:-1]), reversed(features[:-1])):
            y = block(f, y)
        return {"out": resize(self.classifier(y), size)}


def refine_net(num_classes: int, *, backbone: str = "resnet101", pretrained: bool = False,
               features: int = 256, pooling_blocks: int = 2, **backbone_kwargs) -> RefineNet:
    """4-cascaded RefineNet (paper: ResNet-101, widths 256 and 512 for the coarsest path)."""
    if features < 1 or pooling_blocks < 1:
        raise ValueError(f"features and pooling_blocks must be >= 1, got {features} and {pooling_blocks}")
    return RefineNet(build_backbone(backbone, pretrained, **backbone_kwargs), num_classes,
                     features, pooling_blocks)
