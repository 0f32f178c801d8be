"""Transforms applied to an (image, mask) pair together.

torchvision.transforms.v2 already does the joint work: it dispatches on
`tv_tensors.Image` / `tv_tensors.Mask`, resizes masks with nearest neighbour
and pads each type with its own fill. This module adds what v2 lacks (random
scaling by a factor of the image's own size, shorter-side resizing, the U-Net
paper's elastic deformation) and builds
the standard training and evaluation pipelines.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from datasets.base import IGNORE_INDEX
from models.input_norm import IMAGENET, InputNorm


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
    """Resize so that the shorter side is `size`, keeping the aspect ratio.

    With `masks=False` only the image is resized and the mask passes through
    at its original resolution: evaluation then scores logits resized back to
    the original size, as the Cityscapes and ADE20K benchmarks require.
    """

    def __init__(self, size: int, masks: bool = True) -> None:
        super().__init__()
        self.size = size
        self.masks = masks

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        scale = self.size / min(height, width)
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt, params: dict):
        if not self.masks and isinstance(inpt, tv_tensors.Mask):
            return inpt
        return TF.resize(inpt, params["size"], antialias=True)


class ElasticDeform(v2.Transform):
    """Elastic deformation by a smooth random displacement field (the U-Net paper, Sec. 3.1).

    As in the paper: displacement vectors drawn on a coarse `grid` x `grid` grid
    (3 x 3 there) from a Gaussian with `std` pixels standard deviation (10 there),
    interpolated bicubically to every pixel (the coarse points sit on the image's
    corners and spread evenly between them). Each output pixel x reads the input at
    x + displacement(x): images bilinearly, masks with nearest neighbour (so masks
    keep exactly their ids, ignore included), the same field for both. Points that
    fall outside the image are reflected at its border. Sampling runs in float64
    and uint8 images are rounded back, so a zero field returns them unchanged; with
    `std` 0 the transform returns its inputs untouched.
    """

    def __init__(self, std: float = 10.0, grid: int = 3) -> None:
        super().__init__()
        if std < 0 or grid < 2:
            raise ValueError(f"need std >= 0 and grid >= 2, got std={std}, grid={grid}")
        self.std, self.grid = std, grid

    def make_params(self, flat_inputs: list) -> dict:
        height, width = v2.query_size(flat_inputs)
        coarse = torch.randn(1, 2, self.grid, self.grid, dtype=torch.float64) * self.std
        field = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
        return {"displacement": field[0]}  # [2, H, W]: (dy, dx) in pixels

    def transform(self, inpt, params: dict):
        if self.std == 0:
            return inpt
        if not isinstance(inpt, torch.Tensor):
            raise TypeError(f"ElasticDeform takes tensors (tv_tensors.Image / Mask), got {type(inpt).__name__}")
        out = warp(inpt.as_subclass(torch.Tensor), params["displacement"], nearest=isinstance(inpt, tv_tensors.Mask))
        return tv_tensors.wrap(out, like=inpt)


def warp(tensor: torch.Tensor, displacement: torch.Tensor, nearest: bool = False) -> torch.Tensor:
    """Sample `tensor` [..., H, W] at (y + dy, x + dx) for `displacement` [2, H, W] = (dy, dx) in pixels,
    reflecting at the border; bilinear, or nearest for label images. Keeps shape and dtype."""
    height, width = tensor.shape[-2:]
    ys = torch.arange(height, dtype=torch.float64)[:, None] + displacement[0]
    xs = torch.arange(width, dtype=torch.float64)[None, :] + displacement[1]
    # grid_sample's coordinates (align_corners=True): -1 and 1 are the centres of the border pixels
    grid = torch.stack((xs * 2 / max(width - 1, 1) - 1, ys * 2 / max(height - 1, 1) - 1), dim=-1)[None]
    flat = tensor.reshape(1, -1, height, width).to(torch.float64)
    out = torch.nn.functional.grid_sample(flat, grid, mode="nearest" if nearest else "bilinear",
                                          padding_mode="reflection", align_corners=True)
    out = out.reshape(tensor.shape)
    if not tensor.is_floating_point():
        info = torch.iinfo(tensor.dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(tensor.dtype)


class ToBGR(v2.Transform):
    """Reverse the channel order of images (RGB -> BGR, for Caffe's weights); masks pass through."""

    def transform(self, inpt, params: dict):
        if isinstance(inpt, tv_tensors.Mask):
            return inpt
        return tv_tensors.wrap(inpt.flip(-3), like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else inpt.flip(-3)


def _to_model_input(norm: InputNorm) -> list:
    # ToDtype with a plain dtype converts images only; masks stay int64. Pixels are in [0, 1]
    # after it, so the mean and std are taken to that range (Caffe's are in 0..255).
    mean, std = norm.unit_mean_std()
    return [v2.ToDtype(torch.float32, scale=True), *([ToBGR()] if norm.bgr else []), v2.Normalize(mean, std)]


# hszhao/semseg's RandRotate rotates half of the images; its RandomGaussianBlur is OpenCV's
# GaussianBlur with a 5 x 5 kernel and sigma 0, for which OpenCV takes
# sigma = 0.3 * ((ksize - 1) / 2 - 1) + 0.8 = 1.1.
ROTATE_PROBABILITY = 0.5
BLUR_KERNEL, BLUR_SIGMA = 5, 1.1


def random_rotation(degrees: float, norm: InputNorm = IMAGENET) -> v2.Transform:
    """With probability 0.5, rotate by an angle uniform in [-degrees, degrees] about the centre,
    keeping the size: the image bilinearly, filled with its mean colour (zero once normalised),
    the mask with nearest neighbour, filled with the ignore index (as the authors' RandRotate)."""
    fill = {tv_tensors.Image: list(norm.mean_rgb8()), tv_tensors.Mask: IGNORE_INDEX}
    rotation = v2.RandomRotation(degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=fill)
    return v2.RandomApply([rotation], p=ROTATE_PROBABILITY)


def random_blur(probability: float) -> v2.Transform:
    """With `probability`, the authors' Gaussian blur of the image (the mask passes through)."""
    return v2.RandomApply([v2.GaussianBlur(BLUR_KERNEL, sigma=BLUR_SIGMA)], p=probability)


class RandomGamma(v2.Transform):
    """Raise uint8 images (scaled to [0, 1]) to a power drawn log-uniformly from
    [1 / (1 + gamma), 1 + gamma]: the non-linear brightness change between cameras and
    exposures that a linear brightness/contrast change does not cover. Masks pass through."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"need gamma >= 0, got {gamma}")
        self.log_range = float(torch.log1p(torch.tensor(gamma)))

    def make_params(self, flat_inputs: list) -> dict:
        return {"gamma": float(torch.exp((2 * torch.rand(()) - 1) * self.log_range))}

    def transform(self, inpt, params: dict):
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        return TF.adjust_gamma(inpt, params["gamma"])


def photometric(brightness: float = 0.0, contrast: float = 0.0, gamma: float = 0.0) -> list:
    """Random brightness and contrast (factors uniform in [1 - x, 1 + x]) and gamma (RandomGamma)
    of the image; an empty list when all are 0."""
    steps: list = []
    if brightness > 0 or contrast > 0:
        steps.append(v2.ColorJitter(brightness=brightness or None, contrast=contrast or None))
    if gamma > 0:
        steps.append(RandomGamma(gamma))
    return steps


def padded_random_crop(size: int | Sequence[int], norm: InputNorm) -> v2.Transform:
    """A random crop of exactly `size`; smaller images are padded, the image with its mean colour
    (zero once normalised), the mask with the ignore index."""
    return v2.RandomCrop(size, pad_if_needed=True,
                         fill={tv_tensors.Image: list(norm.mean_rgb8()), tv_tensors.Mask: IGNORE_INDEX})


def train_transforms(crop_size: int | Sequence[int], scale_range: Sequence[float] = (0.5, 2.0),
                     hflip: bool = True, base_size: int | None = None, norm: InputNorm = IMAGENET,
                     elastic_std: float = 0.0, elastic_grid: int = 3, rotate: float = 0.0,
                     blur: float = 0.0, vflip: bool = False, brightness: float = 0.0,
                     contrast: float = 0.0, gamma: float = 0.0, precrop: int = 0) -> v2.Compose:
    """Random scale, elastic deformation (when `elastic_std` > 0), random rotation (when
    `rotate` > 0) and Gaussian blur (with probability `blur`), crop of exactly
    `crop_size` (an int, or (height, width)), flips, brightness/contrast/gamma
    (`photometric`), normalise with `norm`. With `precrop` > 0, a random window of that
    size is cut first, so that scaling, deformation and rotation run on the window rather
    than the whole image (patch training on large images: several times faster).

    Every crop has the configured size: an image smaller than the crop is
    padded, the image with its mean colour (which normalises to zero, as the
    sliding window pads at test time) and the mask with the ignore index, so
    padding never counts in the loss. The deformation runs on the whole
    (scaled) image before cropping, so the crop's own borders are never reflected.
    """
    steps: list = []
    if base_size:
        steps.append(ResizeShorterSide(base_size))
    if precrop:
        steps.append(padded_random_crop(precrop, norm))
    if tuple(scale_range) != (1.0, 1.0):
        steps.append(RandomScale(*scale_range))
    if elastic_std > 0:
        steps.append(ElasticDeform(elastic_std, elastic_grid))
    if rotate > 0:  # the authors' order: scale, rotate, blur, flip, crop
        steps.append(random_rotation(rotate, norm))
    if blur > 0:
        steps.append(random_blur(blur))
    steps.append(padded_random_crop(crop_size, norm))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if vflip:
        steps.append(v2.RandomVerticalFlip())
    # After the crop: the photometric changes then touch only the pixels that are kept.
    steps += photometric(brightness, contrast, gamma)
    return v2.Compose(steps + _to_model_input(norm))


def eval_transforms(base_size: int | None = None, norm: InputNorm = IMAGENET) -> v2.Compose:
    """Normalise; optionally resize the image's shorter side to `base_size` first.

    The mask is never resized: `utils.inference.evaluate` resizes the logits
    back to the mask's (the original) resolution, so metrics are always
    computed on the original labels, as the benchmarks define them.
    """
    steps: list = [ResizeShorterSide(base_size, masks=False)] if base_size else []
    return v2.Compose(steps + _to_model_input(norm))
