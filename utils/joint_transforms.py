"""Transforms applied to an (image, mask) pair together.

torchvision.transforms.v2 already does the joint work: it dispatches on
`tv_tensors.Image` / `tv_tensors.Mask`, resizes masks with nearest neighbour
and pads each type with its own fill. This module adds what v2 lacks (random
scaling by a factor of the image's own size, shorter-side resizing) and builds
the standard training and evaluation pipelines.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from datasets.base import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from [min_scale, max_scale] (masks: nearest)."""

    def __init__(self, min_scale: float, max_scale: float) -> None:
        super().__init__()
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = min_scale, max_scale

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        scale = self.min_scale + (self.max_scale - self.min_scale) * torch.rand(()).item()
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt, params: dict):
        return TF.resize(inpt, params["size"], antialias=True)


class ResizeShorterSide(v2.Transform):
    """Resize so that the shorter side is `size`, keeping the aspect ratio."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        scale = self.size / min(height, width)
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt, params: dict):
        return TF.resize(inpt, params["size"], antialias=True)


def _to_model_input(mean: Sequence[float], std: Sequence[float]) -> list:
    # ToDtype with a plain dtype converts images only; masks stay int64.
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transforms(crop_size: int | Sequence[int], scale_range: Sequence[float] = (0.5, 2.0),
                     hflip: bool = True, base_size: int | None = None,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Random scale, crop of exactly `crop_size` (padded with 0 / ignore), flip, normalise.

    Every crop has the configured size: an image smaller than the crop is
    padded, image with 0 and mask with the ignore index, so padding never
    counts in the loss.
    """
    steps: list = []
    if base_size:
        steps.append(ResizeShorterSide(base_size))
    if tuple(scale_range) != (1.0, 1.0):
        steps.append(RandomScale(*scale_range))
    steps.append(v2.RandomCrop(crop_size, pad_if_needed=True,
                               fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + _to_model_input(mean, std))


def eval_transforms(base_size: int | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Normalise; optionally resize the shorter side to `base_size` first.

    When resized, metrics are computed at the resized resolution (the mask is
    resized with nearest neighbour alongside).
    """
    steps: list = [ResizeShorterSide(base_size)] if base_size else []
    return v2.Compose(steps + _to_model_input(mean, std))
