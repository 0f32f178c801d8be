"""DeepLab v3 and DeepLab v3+.

DeepLab v3: Chen, Papandreou, Schroff and Adam, "Rethinking Atrous Convolution
for Semantic Image Segmentation", arXiv:1706.05587 (2017).
DeepLab v3+: Chen, Zhu, Papandreou, Schroff and Adam, "Encoder-Decoder with
Atrous Separable Convolution for Semantic Image Segmentation", ECCV 2018
(arXiv:1802.02611).

Both sit on a dilated ResNet (output stride 16 by default, or 8) and share the
atrous spatial pyramid pooling (ASPP) of the v3 paper: a 1x1 branch, three 3x3
branches at rates 6/12/18 (doubled to 12/24/36 at output stride 8, as the paper
does), and an image-level branch (global average pooling, 1x1 conv, BN,
broadcast back), all with `channels` (256) filters and BatchNorm, concatenated
and projected by a 1x1 conv + BN.

Choices where the papers leave room or where we follow torchvision so that its
published weights load (see `from_torchvision`):
- v3 head: torchvision puts a 3x3 conv + BN + ReLU between ASPP and the 1x1
  classifier, and dropout 0.5 after the ASPP projection. The paper has neither;
  `head_conv=True` (default) keeps torchvision's layout, `head_conv=False` is
  the paper's head.
- Auxiliary head (`aux=True`, off by default as in the papers): torchvision's
  FCN head on the layer3 features (3x3 conv to in/4 channels, BN, ReLU,
  dropout 0.1, 1x1 conv), returned as 'aux' in training mode only.
- v3+ decoder: the stride-4 features (end of layer1) are reduced to 48
  channels by 1x1 conv + BN + ReLU, concatenated with the ASPP output upsampled
  to their size, then two 3x3 conv + BN + ReLU with 256 filters and the 1x1
  classifier. With a ResNet encoder these are ordinary convolutions; the
  paper's depthwise-separable ones belong to its Xception encoder. Dropout
  after the ASPP projection is 0.1 (keep probability 0.9 in the authors' code).
- Batch size 1 in training: the image-level branch normalises a 1x1 map, so a
  batch of one gives one value per channel, whose batch variance is zero
  (PyTorch refuses, and the output would be the constant BN bias, passing no
  gradient). That BN keeps torchvision's parameters but, only when it sees a
  single value per channel in training, normalises with its running
  statistics (as in eval) and leaves them unchanged. Under SyncBatchNorm the
  layer is converted like any BN and takes its statistics over all processes.
- Logits are bilinearly upsampled to the input size, so any H x W works.
- Multi-grid (v3 paper, Sec. 4.1 and Table 7): `multi_grid=(1, 2, 4)` gives the
  three blocks of the last stage the rates 2, 4, 8 at output stride 16 (unit
  rates times the stage's rate 2; 4, 8, 16 at output stride 8). The paper's
  77.21 (VOC val, single scale) uses it; `None` (the default) is torchvision's
  layout (its first layer4 block keeps the previous rate), so that torchvision's
  weights give torchvision's function.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import config

from .backbones import RESNET_ARCHS, Backbone, build_backbone
from .layers import ConvBNReLU, rename_by_prefix, resize


class ImagePoolBatchNorm(nn.BatchNorm2d):
    """BatchNorm that uses running statistics when a training batch has one value per channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.numel() == x.shape[1]:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, momentum=0.0, eps=self.eps)
        return super().forward(x)


class ImagePooling(nn.Sequential):
    """ASPP's image-level branch: global average pool, 1x1 conv, BN, ReLU, broadcast to the map's size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            ImagePoolBatchNorm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Bilinear upsampling of a 1x1 map is a broadcast.
        return super().forward(x).expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3, Sec. 3.3)."""

    def __init__(self, in_channels: int, rates: tuple[int, ...], channels: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            ConvBNReLU(in_channels, channels, 1),
            *(ConvBNReLU(in_channels, channels, 3, dilation=rate) for rate in rates),
            ImagePooling(in_channels, channels),
        ])
        self.project = ConvBNReLU(len(self.branches) * channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.project(torch.cat([branch(x) for branch in self.branches], dim=1)))


class AuxHead(nn.Sequential):
    """torchvision's FCNHead, used as DeepLab's optional auxiliary classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, in_channels // 4, 3),
            nn.Dropout(0.1),
            nn.Conv2d(in_channels // 4, num_classes, 1),
        )


class Decoder(nn.Module):
    """DeepLab v3+ decoder (Sec. 3.1): fuse upsampled encoder output with reduced stride-4 features."""

    def __init__(self, low_channels: int, encoder_channels: int, channels: int = 256,
                 reduced_channels: int = 48) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(low_channels, reduced_channels, 1)
        self.fuse = nn.Sequential(
            ConvBNReLU(encoder_channels + reduced_channels, channels, 3),
            ConvBNReLU(channels, channels, 3),
        )

    def forward(self, encoded: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = self.reduce(low)
        return self.fuse(torch.cat([resize(encoded, low.shape[-2:]), low], dim=1))


class DeepLab(nn.Module):
    """Backbone, ASPP, optional v3+ decoder, classifier, optional auxiliary head."""

    def __init__(self, backbone: Backbone, num_classes: int, *, rates: tuple[int, ...],
                 channels: int = 256, head_conv: bool = True, decoder: bool = False,
                 dropout: float = 0.5, aux: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(backbone.channels[-1], rates, channels, dropout)
        self.decoder = Decoder(backbone.channels[0], channels, channels) if decoder else None
        self.head = ConvBNReLU(channels, channels, 3) if head_conv else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        # layer3 of the ResNet: the stage before the last.
        self.aux_head = AuxHead(backbone.channels[-2], num_classes) if aux else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        y = self.aspp(features[-1])
        if self.decoder is not None:
            y = self.decoder(y, features[0])
        result = {"out": resize(self.classifier(self.head(y)), size)}
        if self.aux_head is not None and self.training:
            result["aux"] = resize(self.aux_head(features[-2]), size)
        return result


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """Rates 6/12/18 at output stride 16, doubled at 8 (DeepLab v3, Sec. 3.3)."""
    if output_stride not in (8, 16):
        raise ValueError(f"DeepLab's output_stride must be 8 or 16, got {output_stride}")
    return (6, 12, 18) if output_stride == 16 else (12, 24, 36)


def _encoder(backbone: str, pretrained: bool, output_stride: int, weights_file: str | None,
             multi_grid: Sequence[int] | None = None) -> Backbone:
    if backbone not in RESNET_ARCHS:
        raise ValueError(f"DeepLab needs a dilated ResNet backbone; choose one of {', '.join(RESNET_ARCHS)}, "
                         f"got {backbone!r}")
    aspp_rates(output_stride)
    block_dilations = None
    if multi_grid is not None:
        if len(multi_grid) == 0 or any(int(g) < 1 for g in multi_grid):
            raise ValueError(f"multi_grid must be positive unit rates such as (1, 2, 4), got {multi_grid}")
        stage_rate = 32 // output_stride  # layer4's dilation: 2 at output stride 16, 4 at 8
        block_dilations = {"layer4": tuple(stage_rate * int(g) for g in multi_grid)}
    return build_backbone(backbone, pretrained, output_stride=output_stride, weights_file=weights_file,
                          block_dilations=block_dilations)


def deeplab_v3(num_classes: int, *, backbone: str = "resnet101", pretrained: bool = False,
               output_stride: int = 16, aux: bool = False, channels: int = 256,
               head_conv: bool = True, dropout: float = 0.5, multi_grid: Sequence[int] | None = None,
               weights_file: str | None = None) -> DeepLab:
    """DeepLab v3 (paper: ResNet-101, output stride 16 for training, 8 for the best results,
    multi-grid (1, 2, 4))."""
    return DeepLab(_encoder(backbone, pretrained, output_stride, weights_file, multi_grid), num_classes,
                   rates=aspp_rates(output_stride), channels=channels, head_conv=head_conv,
                   dropout=dropout, aux=aux)


def deeplab_v3_plus(num_classes: int, *, backbone: str = "resnet101", pretrained: bool = False,
                    output_stride: int = 16, aux: bool = False, channels: int = 256,
                    dropout: float = 0.1, multi_grid: Sequence[int] | None = None,
                    weights_file: str | None = None) -> DeepLab:
    """DeepLab v3+ (paper: output stride 16, decoder on the stride-4 features)."""
    return DeepLab(_encoder(backbone, pretrained, output_stride, weights_file, multi_grid), num_classes,
                   rates=aspp_rates(output_stride), channels=channels, head_conv=False,
                   decoder=True, dropout=dropout, aux=aux)


# ---------------------------------------------------------------- torchvision's weights

# torchvision DeepLabV3 key prefix -> ours. The backbone's keys are torchvision's
# (conv1, bn1, layer1..4); only the heads differ: ASPP, 3x3 conv + BN, 1x1 conv.
_TORCHVISION_PREFIXES = (
    ("backbone.", "backbone."),
    ("classifier.0.convs.", "aspp.branches."),
    ("classifier.0.project.", "aspp.project."),
    ("classifier.1.", "head.0."),
    ("classifier.2.", "head.1."),
    ("classifier.4.", "classifier."),
    ("aux_classifier.0.", "aux_head.0.0."),
    ("aux_classifier.1.", "aux_head.0.1."),
    ("aux_classifier.4.", "aux_head.2."),
)


def from_torchvision(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a torchvision `deeplabv3_resnet*` state dict to our `deeplab_v3` keys.

    The result loads strictly into `deeplab_v3(num_classes, backbone=...,
    output_stride=8, aux=...)` with head_conv=True (torchvision dilates to
    output stride 8; its ASPP rates 12/24/36 are ours at that stride). An
    unexpected key is an error rather than a silent drop.
    """
    converted = {}
    for key, value in state_dict.items():
        new_key = rename_by_prefix(key, _TORCHVISION_PREFIXES)
        if new_key is None:
            raise KeyError(f"{key!r} is not a key of torchvision's DeepLabV3-ResNet")
        converted[new_key] = value
    return converted


def torchvision_weights_url(arch: str = "resnet101") -> str:
    """URL of torchvision's published DeepLabV3 weights (COCO subset, 21 VOC classes)."""
    return torchvision.models.get_model_weights(f"deeplabv3_{arch}")["COCO_WITH_VOC_LABELS_V1"].url


def deeplab_v3_from_torchvision(arch: str = "resnet101",
                                path: str | os.PathLike | None = None) -> DeepLab:
    """Our DeepLab v3 carrying torchvision's published `deeplabv3_<arch>` weights.

    21 classes (VOC's, trained on a COCO subset), output stride 8, aux head.
    `path` defaults to the file torchvision would download, in
    config.weights_dir(). A missing file is an error naming the path and URL.
    """
    if arch not in ("resnet50", "resnet101"):
        raise ValueError(f"torchvision publishes DeepLabV3 for resnet50 and resnet101, not {arch!r}")
    url = torchvision_weights_url(arch)
    path = Path(path) if path is not None else config.weights_dir() / os.path.basename(urlparse(url).path)
    if not path.is_file():
        raise FileNotFoundError(f"torchvision's deeplabv3_{arch} weights not found at {path}. Download {url} "
                                f"into {path.parent} (or set SEG_WEIGHTS to the folder that holds it).")
    model = deeplab_v3(21, backbone=arch, output_stride=8, aux=True)
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(from_torchvision(state_dict), strict=True)
    return model
