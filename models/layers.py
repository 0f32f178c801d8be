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


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d that stays valid for any input size in an exported ONNX graph.

    ONNX has no adaptive pooling: PyTorch's exporter writes a fixed AveragePool, only when
    the bins divide the traced feature map, so the graph would accept one input size.
    While exporting, the same averages are computed as (bins x H) @ x @ (W x bins) with
    pooling matrices built from the input's size (bin i covers floor(i H / b) ..
    ceil((i + 1) H / b), as PyTorch's), which the graph recomputes for every size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        bins_h, bins_w = (self.output_size, self.output_size) if isinstance(self.output_size, int) else self.output_size
        h, w = x.shape[-2:]
        rows, cols = _pooling_matrix(h, bins_h or h, x), _pooling_matrix(w, bins_w or w, x)
        return rows @ x @ cols.transpose(0, 1)


def _pooling_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size): row i averages the positions adaptive pooling puts into bin i."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode="floor")
    end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(size, device=like.device)
    inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def max_unpool2x2(x: torch.Tensor, indices: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """F.max_unpool2d(x, indices, 2, 2, output_size=size) (SegNet's decoder).

    While exporting to ONNX, which PyTorch's exporter cannot write max_unpool2d to, the same
    function as a scatter: each value goes to its recorded position in a zero map.
    """
    if not torch.onnx.is_in_onnx_export():
        return F.max_unpool2d(x, indices, 2, 2, output_size=size)
    n, c = x.shape[:2]
    h, w = size[-2], size[-1]
    return x.new_zeros(n, c, h * w).scatter(2, indices.flatten(2), x.flatten(2)).view(n, c, h, w)


def rename_by_prefix(key: str, prefixes: Iterable[tuple[str, str]]) -> str | None:
    """`key` with the first matching old prefix of `prefixes` ((old, new) pairs) replaced by its new
    one; None when no prefix matches. The one rule behind every weight-key conversion here."""
    for old, new in prefixes:
        if key.startswith(old):
            return new + key[len(old):]
    return None


# ResNet-50, -101 and -152 differ only in the number of blocks of their third stage.
RESNET_DEPTHS = {6: 50, 23: 101, 36: 152}


def resnet_depth(state_dict: dict, layer3_prefix: str = "layer3.") -> int:
    """50, 101 or 152: the depth of the ResNet whose weights `state_dict` holds, read from the
    number of blocks under `layer3_prefix` (e.g. 'backbone.layer3.'); ValueError for another count."""
    blocks = {key[len(layer3_prefix):].split(".")[0] for key in state_dict if key.startswith(layer3_prefix)}
    if len(blocks) not in RESNET_DEPTHS:
        known = ", ".join(f"ResNet-{depth} has {count}" for count, depth in RESNET_DEPTHS.items())
        raise ValueError(f"{layer3_prefix[:-1]} has {len(blocks)} blocks: not a ResNet ({known})")
    return RESNET_DEPTHS[len(blocks)]


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
