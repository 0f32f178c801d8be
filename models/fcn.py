"""FCN-32s, FCN-16s and FCN-8s: Long, Shelhamer and Darrell, "Fully
Convolutional Networks for Semantic Segmentation", CVPR 2015 (arXiv:1411.4038).

The classifier scores the coarsest features (fc7 on VGG16); FCN-16s and FCN-8s
add scores from the stride-16 and stride-8 features after a learnable 2x
upsampling initialised to bilinear, with the skip score layers initialised to
zero so that training starts from the coarser net's function (as in the
paper). The final upsampling is fixed bilinear, as in the paper. Inputs are
mirror-padded to a multiple of 32 and the logits cropped back, so every size
works and the skip maps align exactly (the paper padded by 100 and cropped).

Backbones: VGG16 (the paper's; fc6/fc7 kept as convolutions, `fc_channels`
shrinks them for tests), any ResNet or DenseNet of `models.backbones`. On
ResNet and DenseNet we follow the paper's recipe for other classifiers (it
also converted AlexNet and GoogLeNet): drop the global pooling and the final
classifier and score the stride-32 features with a 1x1 convolution; their
last stage already plays the role of fc7, so nothing is added.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone, build_backbone
from .layers import bilinear_kernel, pad_to_multiple


def _upsample2x(num_classes: int) -> nn.ConvTranspose2d:
    up = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, bias=False)
    up.weight.data.copy_(bilinear_kernel(num_classes, 4))
    return up


def _zero_conv(in_channels: int, num_classes: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class FCN(nn.Module):
    """`skips` is 0 (FCN-32s), 1 (FCN-16s) or 2 (FCN-8s)."""

    def __init__(self, backbone: Backbone, num_classes: int, skips: int) -> None:
        super().__init__()
        strides = backbone.strides
        if strides[-1] != 32 or 16 not in strides or 8 not in strides:
            raise ValueError(f"FCN needs an undilated backbone (strides ..., 8, 16, 32), got {strides}")
        self.backbone = backbone
        self.skips = skips
        self.score = nn.Conv2d(backbone.channels[-1], num_classes, 1)
        # Features of stride 16 and 8, scored by zero-initialised 1x1 convs.
        self.skip_index = [strides.index(16), strides.index(8)][:skips]
        self.skip_scores = nn.ModuleList(_zero_conv(backbone.channels[i], num_classes) for i in self.skip_index)
        self.upsamples = nn.ModuleList(_upsample2x(num_classes) for _ in range(skips))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, 32)
        features = self.backbone(padded)
        logits = self.score(features[-1])
        for index, skip_score, upsample in zip(self.skip_index, self.skip_scores, self.upsamples):
            logits = upsample(logits) + skip_score(features[index])
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": logits[..., :h, :w]}


def _build(skips: int, num_classes: int, backbone: str, pretrained: bool, **backbone_kwargs) -> FCN:
    if backbone.startswith("vgg"):
        backbone_kwargs.setdefault("with_fc", True)
    elif "fc_channels" in backbone_kwargs:
        raise ValueError(f"fc_channels applies to VGG backbones only (got backbone={backbone!r})")
    return FCN(build_backbone(backbone, pretrained, **backbone_kwargs), num_classes, skips)


def fcn32s(num_classes: int, *, backbone: str = "vgg16", pretrained: bool = False, **kwargs) -> FCN:
    return _build(0, num_classes, backbone, pretrained, **kwargs)


def fcn16s(num_classes: int, *, backbone: str = "vgg16", pretrained: bool = False, **kwargs) -> FCN:
    return _build(1, num_classes, backbone, pretrained, **kwargs)


def fcn8s(num_classes: int, *, backbone: str = "vgg16", pretrained: bool = False, **kwargs) -> FCN:
    return _build(2, num_classes, backbone, pretrained, **kwargs)
