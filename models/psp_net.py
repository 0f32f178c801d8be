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

Choices where the paper leaves room (defaults), and the authors' own network:
- Backbone: torchvision's ResNet (7x7 stem), default ResNet-50 as in the
  paper's ablations. `backbone="resnet50_deep"` / `"resnet101_deep"` is the
  authors' ResNet (hszhao/semseg): three 3x3 convolutions in the stem, ImageNet
  weights from their files resnet50_v2.pth / resnet101_v2.pth.
- Dilation: torchvision's layout by default (the first block of layer3 and
  layer4 keeps the previous rate); `dilate_first_block=True` is the authors'
  (every block of layer3 at 2, of layer4 at 4).
- The 1x1 bin is one value per channel and image, so BatchNorm over it sees
  only N values: with a batch of 1 in training it cannot normalise (PyTorch
  raises) and with small batches its statistics are noise. By default that
  branch uses a biased convolution and ReLU without normalisation; the other
  bins (>= 4 values per image) keep BatchNorm as in the paper. Batch size 1
  therefore trains. `bin_batch_norm=True` is the authors' (BatchNorm in every
  bin, no bias); training on a batch of 1 is then an error saying so.
- Resizing: `align_corners=False` (PyTorch's default) unless
  `align_corners=True`, the authors' convention for the pyramid upsampling and
  the logits (their crops and test sizes are 8k + 1 pixels, where it maps the
  stride-8 grid exactly onto the input's). The model exposes it as
  `resize_align_corners`, so that eval.py and predict.py resize logits back
  the same way.
- With all four (and the defaults of width, bins and aux), the network and
  its parameter layout are those of hszhao/semseg's PSPNet, whose released
  checkpoints `tools/convert_checkpoint.py semseg-pspnet` converts.
- `width` (512 by default, the paper's for ResNet-50/101) sets the channels
  of each pyramid branch and of the fusion convolution; the auxiliary head
  has width / 2 (256, as the authors' code).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import DEEP_RESNET_ARCHS, RESNET_ARCHS, resnet
from .layers import AdaptiveAvgPool2d, ConvBNReLU, rename_by_prefix, resize, resnet_depth


class PyramidPooling(nn.Module):
    """Concatenates the features with their pooled, reduced and upsampled versions."""

    def __init__(self, in_channels: int, branch_channels: int, bins: Sequence[int] = (1, 2, 3, 6),
                 bin_batch_norm: bool = False, align_corners: bool = False) -> None:
        super().__init__()
        branches = []
        for size in bins:
            if size == 1 and not bin_batch_norm:
                # No BatchNorm on a 1x1 map: see the module docstring.
                reduce = nn.Sequential(nn.Conv2d(in_channels, branch_channels, 1), nn.ReLU(inplace=True))
            else:
                reduce = ConvBNReLU(in_channels, branch_channels, kernel_size=1)
            branches.append(nn.Sequential(AdaptiveAvgPool2d(size), reduce))  # valid in ONNX at any size
        self.branches = nn.ModuleList(branches)
        self.out_channels = in_channels + len(bins) * branch_channels
        self.align_corners = align_corners
        # BatchNorm over a 1x1 bin sees one value per channel and image.
        self.min_batch_size = 2 if bin_batch_norm and 1 in bins else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] < self.min_batch_size:
            raise ValueError("psp_net with bin_batch_norm=True cannot train on a batch of 1: BatchNorm in the 1x1 "
                             "pyramid bin needs at least 2 images per batch (use --batch-size 2 or more, or "
                             "bin_batch_norm=False, which trains with batches of 1)")
        size = x.shape[-2:]
        return torch.cat([x, *(resize(branch(x), size, self.align_corners) for branch in self.branches)], dim=1)


class PSPHead(nn.Sequential):
    def __init__(self, in_channels: int, num_classes: int, width: int, bins: Sequence[int],
                 bin_batch_norm: bool = False, align_corners: bool = False) -> None:
        pyramid = PyramidPooling(in_channels, width, bins, bin_batch_norm, align_corners)
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
                 bins: Sequence[int] = (1, 2, 3, 6), aux: bool = True, bin_batch_norm: bool = False,
                 align_corners: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = PSPHead(backbone.channels[-1], num_classes, width, bins, bin_batch_norm, align_corners)
        self.aux_head = AuxHead(backbone.channels[-2], num_classes, width // 2) if aux else None
        self.resize_align_corners = align_corners  # read by models.layers.align_corners_of
        self.min_batch_size = self.head[0].min_batch_size  # checked by the engine before training starts

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        result = {"out": resize(self.head(features[-1]), size, self.resize_align_corners)}
        if self.training and self.aux_head is not None:
            result["aux"] = resize(self.aux_head(features[-2]), size, self.resize_align_corners)
        return result


def psp_net(num_classes: int, *, backbone: str = "resnet50", pretrained: bool = False,
            width: int = 512, bins: Sequence[int] = (1, 2, 3, 6), aux: bool = True,
            output_stride: int = 8, dilate_first_block: bool = False, bin_batch_norm: bool = False,
            align_corners: bool = False, weights_file: str | None = None) -> PSPNet:
    """PSPNet; `backbone="resnet101_deep", dilate_first_block=True, bin_batch_norm=True,
    align_corners=True` is hszhao/semseg's network (see the module docstring)."""
    if backbone not in RESNET_ARCHS + DEEP_RESNET_ARCHS:
        raise ValueError(f"psp_net needs a ResNet backbone; choose one of "
                         f"{', '.join(RESNET_ARCHS + DEEP_RESNET_ARCHS)} (got {backbone!r})")
    net = resnet(backbone, pretrained, output_stride=output_stride, dilate_first_block=dilate_first_block,
                 weights_file=weights_file)
    return PSPNet(net, num_classes, width=width, bins=bins, aux=aux, bin_batch_norm=bin_batch_norm,
                  align_corners=align_corners)


# ---------------------------------------------------------------- hszhao/semseg's checkpoints

# The options under which psp_net is the authors' network (with their deep-base backbone).
SEMSEG_OPTIONS = {"output_stride": 8, "aux": True, "dilate_first_block": True, "bin_batch_norm": True,
                  "align_corners": True}
# Blocks in layer3 -> our backbone name (ResNet-50 has 6, ResNet-101 23).
SEMSEG_DEPTHS = (50, 101)  # the ResNets of their released PSPNets

# Their key prefix -> ours. The deep-base backbone's modules have their names (layer0..4, layer0
# with their indices). A pyramid bin is (pool, conv, bn, relu) there and (pool, (conv, bn, relu))
# here; cls and aux are (conv, bn, relu, dropout, conv) there and (ConvBNReLU, dropout, conv) here.
_SEMSEG_PREFIXES = (
    *((f"layer{i}.", f"backbone.layer{i}.") for i in range(5)),
    ("cls.0.", "head.1.0."),
    ("cls.1.", "head.1.1."),
    ("cls.4.", "head.3."),
    ("aux.0.", "aux_head.0.0."),
    ("aux.1.", "aux_head.0.1."),
    ("aux.4.", "aux_head.2."),
)


def _strip_module(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Their tool/train.py saves the DataParallel / DistributedDataParallel wrapper's keys.
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def semseg_backbone(state_dict: dict[str, torch.Tensor]) -> str:
    """'resnet50_deep' or 'resnet101_deep', from the number of layer3 blocks of their checkpoint."""
    depth = resnet_depth(_strip_module(state_dict))
    if depth not in SEMSEG_DEPTHS:
        raise ValueError(f"a ResNet-{depth}: not hszhao/semseg's PSPNet-50 or -101")
    return f"resnet{depth}_deep"


def from_semseg(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert the state dict of hszhao/semseg's PSPNet (`module.layer0.0.weight`, ...) to our
    keys. The result loads into `psp_net(classes, backbone=semseg_backbone(...), **SEMSEG_OPTIONS)`
    (without the aux head's keys when their checkpoint has none). An unknown key is an error."""
    converted = {}
    for key, value in _strip_module(state_dict).items():
        if key.startswith("ppm.features."):
            _, _, branch, index, rest = key.split(".", 4)
            inner = {"1": "0", "2": "1"}.get(index)  # their conv, bn -> our ConvBNReLU's
            if inner is None:
                raise KeyError(f"{key!r} is not a key of hszhao/semseg's PSPNet")
            converted[f"head.0.branches.{branch}.1.{inner}.{rest}"] = value
            continue
        new_key = rename_by_prefix(key, _SEMSEG_PREFIXES)
        if new_key is None:
            raise KeyError(f"{key!r} is not a key of hszhao/semseg's PSPNet")
        converted[new_key] = value
    return converted
