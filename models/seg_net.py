"""SegNet: Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", IEEE TPAMI 2017
(arXiv:1511.00561).

The encoder is the 13 convolutions of VGG16 with BatchNorm (torchvision's
`vgg16_bn`, ImageNet weights when `pretrained`), without the fully connected
layers. Each of its five 2x2 max-poolings keeps its argmax indices; the
decoder mirrors the encoder block by block, unpooling with those indices (a
sparse map, no learned upsampling) and densifying it with 3x3 convolution +
BatchNorm + ReLU, as many as the matching encoder block has. The last
convolution of each decoder block maps to the channels of the next one; the
very last maps to the classes, without BatchNorm or ReLU (as in the authors'
Caffe model), and its output is the logits (the softmax is the loss's).

Choices where the paper leaves room:
- Inputs are mirror-padded to a multiple of 32 and the logits cropped back,
  so every pooling is exact and any H x W works.
- Other VGG encoders (`vgg19_bn`, or `vgg16` / `vgg19` without BatchNorm in
  the encoder) are accepted; the decoder always uses BatchNorm.
- The decoder is initialised with PyTorch's defaults (the paper used He
  initialisation for the whole net when training from scratch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import VGG_ARCHS, Backbone, vgg
from .layers import ConvBNReLU, max_unpool2x2, pad_to_multiple


class SegNet(nn.Module):
    def __init__(self, encoder_blocks: list[nn.Sequential], num_classes: int) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(encoder_blocks)
        widths = [_out_channels(block) for block in encoder_blocks]
        depths = [sum(isinstance(m, nn.Conv2d) for m in block) for block in encoder_blocks]
        decoder = []
        for i in reversed(range(len(encoder_blocks))):
            c = widths[i]
            layers: list[nn.Module] = [ConvBNReLU(c, c) for _ in range(depths[i] - 1)]
            if i > 0:
                layers.append(ConvBNReLU(c, widths[i - 1]))
            else:
                layers.append(nn.Conv2d(c, num_classes, 3, padding=1))
            decoder.append(nn.Sequential(*layers))
        self.decoder = nn.ModuleList(decoder)
        self.multiple = 2 ** len(encoder_blocks)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        pooled = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)
            pooled.append((indices, size))
        for block in self.decoder:
            indices, size = pooled.pop()
            x = block(max_unpool2x2(x, indices, size))
        return {"out": x[..., :h, :w]}


def _out_channels(block: nn.Sequential) -> int:
    return [m for m in block if isinstance(m, nn.Conv2d)][-1].out_channels


def encoder_blocks(backbone: Backbone) -> list[nn.Sequential]:
    """The VGG backbone's layers split at its five max-poolings, the poolings removed."""
    blocks: list[list[nn.Module]] = [[]]
    for layer in (m for stage in backbone.stages for m in stage):
        if isinstance(layer, nn.MaxPool2d):
            blocks.append([])
        else:
            blocks[-1].append(layer)
    return [nn.Sequential(*b) for b in blocks if b]


def seg_net(num_classes: int, *, backbone: str = "vgg16_bn", pretrained: bool = False,
            weights_file: str | None = None) -> SegNet:
    if backbone not in VGG_ARCHS:
        raise ValueError(f"seg_net needs a VGG encoder; choose one of {', '.join(VGG_ARCHS)} (got {backbone!r})")
    encoder = vgg(backbone, pretrained, weights_file=weights_file)
    model = SegNet(encoder_blocks(encoder), num_classes)
    model.input_norm = encoder.input_norm  # the blocks leave the Backbone behind: keep what its weights expect
    return model
