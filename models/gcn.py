"""GCN: Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters -- Improve
Semantic Segmentation by Global Convolutional Network", CVPR 2017
(arXiv:1703.02719).

Each of the four ResNet stages (strides 4, 8, 16, 32) is scored by a Global
Convolutional Network block: two branches, a k x 1 then 1 x k convolution and
a 1 x k then k x 1 convolution, summed, with no normalisation or
non-linearity (the paper's design: a dense k x k connection at the cost of
2k weights per pair), producing one map per class. A Boundary Refinement
block (x + conv3x3(relu(conv3x3(x)))) follows. The score maps are fused top
down: the coarser one is upsampled 2x by a deconvolution and added to the
finer one, then refined again; after the stride-4 level two more (deconv,
BR) pairs bring the logits to the input resolution, as in the paper's Fig. 2.

Choices where the paper leaves room:
- k = 15 by default (the paper's best setting on PASCAL VOC); `kernel_size`
  changes it, for every stage (the paper uses one k for all).
- Backbone: torchvision's ResNet, default ResNet-152 as in the paper's
  PASCAL VOC experiments (the paper's own ResNet-GCN variant is not built).
- Deconvolutions are 4x4 / stride 2, initialised to bilinear upsampling and
  learned; convolutions keep their biases.
- Inputs are mirror-padded to a multiple of 32 and the logits cropped back,
  so every 2x upsampling meets a map of exactly twice its size.
- There is no BatchNorm in the head, so batch size 1 trains.
"""
from __future__ import annotations

import torch
from torch import nn

from .backbones import RESNET_ARCHS, resnet
from .layers import bilinear_kernel, pad_to_multiple


class GlobalConv(nn.Module):
    """(k x 1 -> 1 x k) + (1 x k -> k x 1): a k x k receptive field with O(k) weights."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 15) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that the map keeps its size, got {kernel_size}")
        k, p = kernel_size, kernel_size // 2
        self.left = nn.Sequential(nn.Conv2d(in_channels, out_channels, (k, 1), padding=(p, 0)),
                                  nn.Conv2d(out_channels, out_channels, (1, k), padding=(0, p)))
        self.right = nn.Sequential(nn.Conv2d(in_channels, out_channels, (1, k), padding=(0, p)),
                                   nn.Conv2d(out_channels, out_channels, (k, 1), padding=(p, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) + self.right(x)


class BoundaryRefine(nn.Module):
    """Residual refinement of a score map: x + conv(relu(conv(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual(x)


def _deconv2x(channels: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
    up.weight.data.copy_(bilinear_kernel(channels, 4))
    return up


class GCN(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, kernel_size: int = 15) -> None:
        super().__init__()
        if backbone.strides != [4, 8, 16, 32]:
            raise ValueError(f"GCN needs an undilated backbone (strides 4, 8, 16, 32), got {backbone.strides}")
        self.backbone = backbone
        c = num_classes
        self.gcn = nn.ModuleList(GlobalConv(ch, c, kernel_size) for ch in backbone.channels)
        self.refine = nn.ModuleList(BoundaryRefine(c) for _ in backbone.channels)
        # One BR after each top-down sum (strides 16, 8, 4) and after each final deconv.
        self.fuse_refine = nn.ModuleList(BoundaryRefine(c) for _ in range(3))
        self.up = nn.ModuleList(_deconv2x(c) for _ in range(3))
        self.final_up = nn.ModuleList(_deconv2x(c) for _ in range(2))
        self.final_refine = nn.ModuleList(BoundaryRefine(c) for _ in range(2))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        features = self.backbone(pad_to_multiple(x, 32))
        scores = [br(gcn(f)) for f, gcn, br in zip(features, self.gcn, self.refine)]
        y = scores[-1]
        for score, up, br in zip(reversed(scores[:-1]), self.up, self.fuse_refine):
            y = br(up(y) + score)
        for up, br in zip(self.final_up, self.final_refine):
            y = br(up(y))
        return {"out": y[..., :h, :w]}


def gcn(num_classes: int, *, backbone: str = "resnet152", pretrained: bool = False,
        kernel_size: int = 15, weights_file: str | None = None) -> GCN:
    if backbone not in RESNET_ARCHS:
        raise ValueError(f"gcn needs a ResNet backbone; choose one of {', '.join(RESNET_ARCHS)} (got {backbone!r})")
    return GCN(resnet(backbone, pretrained, weights_file=weights_file), num_classes, kernel_size)
