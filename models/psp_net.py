"""PSPNet: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network",
CVPR 2017 (arXiv:1612.01105).

A dilated ResNet (output stride 8) feeds the pyramid pooling module: the
stride-8 features are average-pooled to 1x1, 2x2, 3x3 and 6x6 bins, each
reduced by a 1x1 convolution to 1/4 of the feature channels (512 for
ResNet-50), upsampled bilinearly and concatenated with the features; a 3x3
convolution + BatchNorm + ReLU (512 channels), dropout 0.1 and a 1x1
classifier follow, and the logits are upsampled bilinearly to the input size
(interpolation, not padding: the paper's choice, and any H x W works).
In training mode an auxiliary FCN head on the ResNet stage of nominal stride
16 (layer3, res4b22 in the paper; dilated, so its map is at stride 8 too)
returns 'aux' at the input size; the paper weights its loss 0.4, which is the
training engine's concern, not the model's. In eval mode only 'out' is
returned (and the auxiliary head costs nothing).

Choices where the paper leaves room:
- Backbone: torchvision's ResNet (7x7 stem; the authors' ResNets have a
  three-convolution stem), default ResNet-50 as in the paper's ablations.
- The 1x1 bin is one value per channel and image, so BatchNorm over it sees
  only N values: with a batch of 1 in training it cannot normalise (PyTorch
  raises) and with small batches its statistics are noise. That branch uses a
  biased convolution and ReLU without normalisation; the other bins (>= 4
  values per image) keep BatchNorm as in the paper. Batch size 1 therefore
  trains.
- `width` (512 by default, the paper's for ResNet-50/101) sets the channels
  of each pyramid branch and of the fusion convolution; the auxiliary head
  has width / 2 (256, as the authors' code).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import RESNET_ARCHS, resnet
from .layers import ConvBNReLU, resize


class PyramidPooling(nn.Module):
    """Concatenates the features with their pooled, reduced and upsampled versions."""

    def __init__(self, in_channels: int, branch_channels: int, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        branches = []
        for size in bins:
            if size == 1:
                # No BatchNorm on a 1x1 map: see the module docstring.
                reduce = nn.Sequential(nn.Conv2d(in_channels, branch_channels, 1), nn.ReLU(inplace=True))
            else:
                reduce = ConvBNReLU(in_channels, branch_channels, kernel_size=1)
            branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(size), reduce))
        self.branches = nn.ModuleList(branches)
        self.out_channels = in_channels + len(bins) * branch_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x, *(resize(branch(x), size) for branch in self.branches)], dim=1)


class PSPHead(nn.Sequential):
    def __init__(self, in_channels: int, num_classes: int, width: int, bins: Sequence[int]) -> None:
        pyramid = PyramidPooling(in_channels, width, bins)
        super().__init__(
            pyramid,
            ConvBNReLU(pyramid.out_channels, width),
            nn.Dropout2d(0.1),
            nn.Conv2d(width, num_classes, 1),
        )


class AuxHead(nn.Sequential):
    """The FCN-style auxiliary classifier on the stride-16 features."""

    def __init__(self, in_channels: int, num_classes: int, width: int) -> None:
        super().__init__(ConvBNReLU(in_channels, width), nn.Dropout2d(0.1), nn.Conv2d(width, num_classes, 1))


class PSPNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, *, width: int = 512,
                 bins: Sequence[int] = (1, 2, 3, 6), aux: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = PSPHead(backbone.channels[-1], num_classes, width, bins)
        self.aux_head = AuxHead(backbone.channels[-2], num_classes, width // 2) if aux else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        result = {"out": resize(self.head(features[-1]), size)}
        if self.training and self.aux_head is not None:
            result["aux"] = resize(self.aux_head(features[-2]), size)
        return result


def psp_net(num_classes: int, *, backbone: str = "resnet50", pretrained: bool = False,
            width: int = 512, bins: Sequence[int] = (1, 2, 3, 6), aux: bool = True,
            output_stride: int = 8, weights_file: str | None = None) -> PSPNet:
    if backbone not in RESNET_ARCHS:
        raise ValueError(f"psp_net needs a ResNet backbone; choose one of {', '.join(RESNET_ARCHS)} (got {backbone!r})")
    net = resnet(backbone, pretrained, output_stride=output_stride, weights_file=weights_file)
    return PSPNet(net, num_classes, width=width, bins=bins, aux=aux)
