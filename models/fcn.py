"""FCN-32s, FCN-16s and FCN-8s: Long, Shelhamer and Darrell, "Fully
Convolutional Networks for Semantic Segmentation", CVPR 2015 (arXiv:1411.4038).

The classifier scores the coarsest features (fc7 on VGG16); FCN-16s and FCN-8s
add scores from the stride-16 and stride-8 features after a learnable 2x
upsampling initialised to bilinear. Every score layer (the main one and the
skips) is initialised to zero, as in the authors' Caffe nets
(fcn.berkeleyvision.org): a fresh FCN outputs exactly zero logits, and a
skip added to a trained coarser net starts from that net's function. The
final upsampling is fixed bilinear, as in the paper.

`at_once=True` (FCN-16s / FCN-8s) is the authors' one-stage variant
(`voc-fcn8s-atonce`): the stride-16 (pool4) features are multiplied by a fixed
0.01 and the stride-8 (pool3) features by 0.0001 before their score layers, so
that the skips cannot swamp the coarse scores while everything trains at once.
Use it whenever FCN-16s/8s are trained without `--init-from` a coarser net.

Inputs are mirror-padded to a multiple of 32 and the logits cropped back, so
every size works and the skip maps align exactly (the paper padded by 100 and
cropped).

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

    # The fixed feature scales of the authors' at-once nets: pool4 x 0.01, pool3 x 0.0001.
    AT_ONCE_SCALES = (0.01, 0.0001)

    def __init__(self, backbone: Backbone, num_classes: int, skips: int, at_once: bool = False) -> None:
        super().__init__()
        strides = backbone.strides
        if strides[-1] != 32 or 16 not in strides or 8 not in strides:
            raise ValueError(f"FCN needs an undilated backbone (strides ..., 8, 16, 32), got {strides}")
        self.backbone = backbone
        self.skips = skips
        if at_once and skips == 0:
            raise ValueError("at_once applies to FCN-16s and FCN-8s only (FCN-32s has no skips)")
        self.score = _zero_conv(backbone.channels[-1], num_classes)
        # Features of stride 16 and 8, scored by zero-initialised 1x1 convs.
        self.skip_index = [strides.index(16), strides.index(8)][:skips]
        self.skip_scores = nn.ModuleList(_zero_conv(backbone.channels[i], num_classes) for i in self.skip_index)
        self.upsamples = nn.ModuleList(_upsample2x(num_classes) for _ in range(skips))
        self.skip_scales = list(self.AT_ONCE_SCALES[:skips]) if at_once else [1.0] * skips

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, 32)
        features = self.backbone(padded)
        logits = self.score(features[-1])
        for index, scale, skip_score, upsample in zip(self.skip_index, self.skip_scales, self.skip_scores,
                                                      self.upsamples):
            skip = features[index] * scale if scale != 1 else features[index]
            logits = upsample(logits) + skip_score(skip)
        logits = F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": logits[..., :h, :w]}


def _build(skips: int, num_classes: int, backbone: str, pretrained: bool, at_once: bool = False,
           **backbone_kwargs) -> FCN:
    if backbone.startswith("vgg"):
        backbone_kwargs.setdefault("with_fc", True)
    elif "fc_channels" in backbone_kwargs:
        raise ValueError(f"fc_channels applies to VGG backbones only (got backbone={backbone!r})")
    return FCN(build_backbone(backbone, pretrained, **backbone_kwargs), num_classes, skips, at_once)


def fcn32s(num_classes: int, *, backbone: str = "vgg16", pretrained: bool = False, **kwargs) -> FCN:
    return _build(0, num_classes, backbone, pretrained, **kwargs)


def fcn16s(num_classes: int, *, backbone: str = "vgg16", pretrained: bool = False, at_once: bool = False,
           **kwargs) -> FCN:
    return _build(1, num_classes, backbone, pretrained, at_once, **kwargs)


def fcn8s(num_classes: int, *, backbone: str = "vgg16", pretrained: bool = False, at_once: bool = False,
          **kwargs) -> FCN:
    return _build(2, num_classes, backbone, pretrained, at_once, **kwargs)
