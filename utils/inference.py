"""From a model and normalised images to logits: whole image or sliding window,
optionally multi-scale and flipped (test-time augmentation), optionally with
mirrored borders (the U-Net paper's overlap-tile strategy, Fig. 2); or, with
`protocol='semseg'`, the test protocol of PSPNet's authors (utils/semseg_protocol.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import align_corners_of, resize

from .semseg_protocol import semseg_probabilities
from .sliding_window import sliding_window

PROTOCOLS = ("default", "semseg")


@dataclass
class InferenceConfig:
    mode: str = "whole"                 # 'whole' or 'slide'
    tile: int = 512                      # sliding-window tile size
    stride: int = 341                    # sliding-window stride (2/3 of the tile)
    batch_size: int = 4                  # tiles per forward pass
    scales: Sequence[float] = (1.0,)     # test-time scales
    flip: bool = False                   # also average the horizontally flipped prediction
    mirror_margin: int = 0               # reflect-pad the image by this many pixels first, crop back after
    protocol: str = "default"            # 'semseg': PSPNet's authors' test (crops of `tile`, probabilities)
    long_side: int = 0                   # semseg: resize the longer side to this first (their base_size; 0: off)

    def validate(self) -> None:
        if self.mode not in ("whole", "slide"):
            raise ValueError(f"mode must be 'whole' or 'slide', got {self.mode!r}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if (self.mode == "slide" or self.protocol == "semseg") and not 0 < self.stride <= self.tile:
            raise ValueError(f"need 0 < stride <= tile, got stride={self.stride}, tile={self.tile}")
        if self.long_side < 0:
            raise ValueError(f"long_side must be >= 0, got {self.long_side}")
        if self.protocol == "semseg" and self.mirror_margin:
            raise ValueError("the semseg protocol pads crops with the mean colour; it takes no mirror_margin")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive numbers, got {list(self.scales)}")
        if self.mirror_margin < 0:
            raise ValueError(f"mirror_margin must be >= 0, got {self.mirror_margin}")


def mirror_pad(images: torch.Tensor, margin: int) -> torch.Tensor:
    """Reflect `images` [N, C, H, W] by `margin` pixels on every side (the border pixel is not repeated).

    Margins of the image's size or more reflect again (as the U-Net paper's tiles
    at the border of a small image would), one reflection of at most size - 1 at a time.
    """
    for dim in (-2, -1):
        remaining = margin
        while remaining:
            size = images.shape[dim]
            step = min(remaining, size - 1) if size > 1 else remaining
            pad = (0, 0, step, step) if dim == -2 else (step, step, 0, 0)
            images = F.pad(images, pad, mode="reflect" if size > 1 else "replicate")
            remaining -= step
    return images


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, num_classes: int,
                   cfg: InferenceConfig | None = None,
                   size: tuple[int, int] | torch.Size | None = None) -> torch.Tensor:
    """Average logits [N, C, H, W] over the configured scales and flips, at the input's resolution,
    or bilinearly resized to `size` (the labels' or the original image's, when the input was resized).
    Logits are resized back with the model's own convention (`align_corners_of`).

    With `mirror_margin` m, the model sees the image reflect-padded by m pixels on
    every side (whole, or tile by tile), so that pixels near the border get
    mirrored context instead of zero padding; the logits are cropped back.

    With `protocol='semseg'` the result is the authors' averaged softmax probabilities
    instead (utils/semseg_protocol.py: crops of `tile` at `stride`, always flipped, after
    resizing the longer side to `long_side`); their argmax is the prediction.
    """
    cfg = cfg or InferenceConfig()

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return model(batch)["out"]

    if cfg.protocol == "semseg":
        return semseg_probabilities(forward, images, num_classes, cfg.tile, cfg.stride, cfg.long_side,
                                    cfg.scales, cfg.batch_size, flip=True, size=size)
    align_corners = align_corners_of(model)
    margin = cfg.mirror_margin
    if margin:
        original_h, original_w = images.shape[-2:]
        images = mirror_pad(images, margin)

    def run(batch: torch.Tensor) -> torch.Tensor:
        if cfg.mode == "slide":
            return sliding_window(forward, batch, num_classes, cfg.tile, cfg.stride, cfg.batch_size)
        return forward(batch).float()

    height, width = images.shape[-2:]
    total = None
    for scale in cfg.scales:
        # Antialiased when shrinking, as training's random scaling (torchvision's resize) is.
        scaled = images if scale == 1 else F.interpolate(
            images, scale_factor=scale, mode="bilinear", align_corners=False, antialias=scale < 1)
        views = [scaled, scaled.flip(-1)] if cfg.flip else [scaled]
        for k, view in enumerate(views):
            logits = run(view)
            if k == 1:
                logits = logits.flip(-1)
            logits = resize(logits, (height, width), align_corners)
            total = logits if total is None else total + logits
    total = total / (len(cfg.scales) * (2 if cfg.flip else 1))
    if margin:
        total = total[..., margin:margin + original_h, margin:margin + original_w]
    if size is not None:
        total = resize(total.float(), size, align_corners)
    return total
