"""DUC and DUC-HDC: Wang, Chen, Yuan, Liu, Huang, Hou and Cottrell,
"Understanding Convolution for Semantic Segmentation", WACV 2018
(arXiv:1702.08502).

Dense Upsampling Convolution (DUC): the stride-d features (h x w x c) of a
dilated ResNet are convolved to h x w x (L * d^2) and rearranged (pixel
shuffle) to H x W x L logits, so the upsampling is learned per sub-pixel
instead of bilinear. `duc` uses the usual dilated ResNet (output stride 8,
dilation 2 in layer3 and 4 in layer4, torchvision's scheme). `duc_hdc` adds
Hybrid Dilated Convolution: consecutive blocks use rates without a common
factor, so that their combined receptive field covers every pixel instead of
a checkerboard ("gridding"). The default rates are the paper's best setting
as we read it: blocks of layer3 (res4b) in groups of four with rates
1, 2, 5, 9, and the three blocks of layer4 (res5b) with 5, 9, 17; `hdc_rates`
overrides them (see `models.backbones.resnet(block_dilations=...)`).

Choices where the paper leaves room:
- DUC is a single 3x3 convolution (with bias, no BatchNorm, so batch size 1
  trains) from the ResNet features to L * d^2 channels; the authors' released
  models add an ASPP-like sum of several dilated convolutions before the
  shuffle, which is left out here.
- Backbone: torchvision's ResNet, default ResNet-101 as in the paper.
- Inputs are mirror-padded to a multiple of d (8) and the logits cropped
  back, so the shuffled map is exactly the padded input's size.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import RESNET_ARCHS, resnet
from .layers import pad_to_multiple

HDC_RATES: dict[str, tuple[int, ...]] = {"layer3": (1, 2, 5, 9), "layer4": (5, 9, 17)}


class DenseUpsamplingConv(nn.Sequential):
    """conv3x3 to num_classes * factor^2 channels, then pixel shuffle by `factor`."""

    def __init__(self, in_channels: int, num_classes: int, factor: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, num_classes * factor ** 2, 3, padding=1),
            nn.PixelShuffle(factor),
        )


class DUC(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.factor = backbone.strides[-1]
        self.head = DenseUpsamplingConv(backbone.channels[-1], num_classes, self.factor)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        # ResNet halves sizes with ceil rounding; a multiple of the output
        # stride makes the feature map exactly 1/d of the padded input.
        features = self.backbone(pad_to_multiple(x, self.factor))
        return {"out": self.head(features[-1])[..., :h, :w]}


def _check(backbone: str, name: str) -> None:
    if backbone not in RESNET_ARCHS:
        raise ValueError(f"{name} needs a ResNet backbone; choose one of {', '.join(RESNET_ARCHS)} (got {backbone!r})")


def duc(num_classes: int, *, backbone: str = "resnet101", pretrained: bool = False,
        output_stride: int = 8, weights_file: str | None = None) -> DUC:
    _check(backbone, "duc")
    return DUC(resnet(backbone, pretrained, output_stride=output_stride, weights_file=weights_file), num_classes)


def duc_hdc(num_classes: int, *, backbone: str = "resnet101", pretrained: bool = False,
            hdc_rates: dict[str, Sequence[int]] | None = None, weights_file: str | None = None) -> DUC:
    _check(backbone, "duc_hdc")
    rates = dict(HDC_RATES if hdc_rates is None else hdc_rates)
    net = resnet(backbone, pretrained, output_stride=8, block_dilations=rates, weights_file=weights_file)
    return DUC(net, num_classes)
