"""Small layers and tensor helpers shared by several architectures."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """3x3 (or k x k) convolution, BatchNorm, ReLU: the building brick of most heads."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 dilation: int = 1, stride: int = 1) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class PaddedConv2d(nn.Conv2d):
    """nn.Conv2d(in, out, k, padding=p) with the zero padding applied to the input first.

    The same function and the same parameters (state-dict keys included). Why: on the CPU,
    oneDNN picks a pathologically slow backward when the kernel is larger than its input
    map, as for FCN's fc6 (7 x 7) on the 6 x 6 stride-32 map of a 192-pixel crop: 48 s
    instead of 1 s for a batch of 4 on 2 cores (torch 2.14.1). Padded explicitly, the input
    is never smaller than the kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size)
        self.explicit_padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.explicit_padding,) * 4))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, explicit_padding={self.explicit_padding}"


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size, align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize of logits or features to `size` (H, W); a no-op when equal.

    `align_corners=True` is the convention of networks trained with it (hszhao/semseg's
    PSPNet, with crops of 8k + 1 pixels): corner pixels map onto corner pixels.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def rename_by_prefix(key: str, prefixes: Iterable[tuple[str, str]]) -> str | None:
    """`key` with the first matching old prefix of `prefixes` ((old, new) pairs) replaced by its new
    one; None when no prefix matches. The one rule behind every weight-key conversion here."""
    for old, new in prefixes:
        if key.startswith(old):
            return new + key[len(old):]
    return None


def align_corners_of(model: nn.Module | object) -> bool:
    """The resize convention `model` was built with (its `resize_align_corners` attribute, on it
    or on a submodule), so that inference resizes its logits back as the network itself
    resizes; False, PyTorch's default, for networks that do not say. (Not `align_corners`:
    nn.Upsample has an attribute of that name that speaks only for itself.)"""
    # Plain callables standing in for a model (tests, wrappers) have no submodules.
    for module in model.modules() if isinstance(model, nn.Module) else [model]:
        value = getattr(module, "resize_align_corners", None)
        if isinstance(value, bool):
            return value
    return False


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right of `x` so that H and W are multiples of `multiple`.

    Mirrors the border (the U-Net paper's overlap-tile idea) so that the padding
    looks like image content; falls back to edge replication when the image is
    too small to mirror.
    """
    h, w = x.shape[-2:]
    pad_h = (-h) % multiple
    pad_w = (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a depthwise ConvTranspose2d a bilinear upsampler (FCN paper)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt = 1 - (og - center).abs() / factor
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = kernel
    return weight
