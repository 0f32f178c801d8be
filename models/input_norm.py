"""How a network expects its input pixels: a property of its (pretrained) backbone.

torchvision's ImageNet weights expect RGB in [0, 1], minus the ImageNet mean,
divided by its std. Caffe's VGG16 (the FCN paper's) expects BGR in 0..255 minus
the BGR means 103.939 / 116.779 / 123.68, with no division. Training, eval.py,
predict.py and the pictures must all apply the one the weights were trained
with, so the model carries it (`input_norm_of`) and every checkpoint records it
(`to_dict` / `from_dict`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class InputNorm:
    """model input = (pixels in [0, pixel_range], channels RGB or BGR - mean) / std, per channel.

    `mean` and `std` are in the model's channel order (BGR when `bgr`) and pixel range.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pixel_range: float = 1.0
    bgr: bool = False

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "pixel_range": self.pixel_range, "bgr": self.bgr}

    @classmethod
    def from_dict(cls, record: dict) -> "InputNorm":
        """The normalisation a checkpoint records (utils.checkpoint.migrate fills it in for
        checkpoints from before it was recorded)."""
        return cls(tuple(record["mean"]), tuple(record["std"]), float(record["pixel_range"]), bool(record["bgr"]))

    def unit_mean_std(self) -> tuple[list[float], list[float]]:
        """mean and std for pixels scaled to [0, 1] (what v2.Normalize sees after ToDtype(scale=True))."""
        return [m / self.pixel_range for m in self.mean], [s / self.pixel_range for s in self.std]

    def mean_rgb8(self) -> tuple[int, int, int]:
        """The mean colour as 8-bit RGB: the padding colour that normalises to (about) zero."""
        rgb = self.mean[::-1] if self.bgr else self.mean
        return tuple(int(round(255 * m / self.pixel_range)) for m in rgb)

    def normalize(self, rgb: torch.Tensor) -> torch.Tensor:
        """float [..., 3, H, W] model input from RGB pixels in [0, 1]."""
        mean, std = (torch.tensor(v, dtype=torch.float32, device=rgb.device).view(3, 1, 1)
                     for v in self.unit_mean_std())
        x = rgb.flip(-3) if self.bgr else rgb
        return (x - mean) / std

    def denormalize(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [3, H, W] RGB from a model input [3, H, W] (the inverse of `normalize`)."""
        mean, std = (torch.tensor(v, dtype=torch.float32, device=image.device).view(3, 1, 1)
                     for v in self.unit_mean_std())
        rgb = image.float() * std + mean
        rgb = rgb.flip(-3) if self.bgr else rgb
        return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


IMAGENET = InputNorm(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE_VGG = InputNorm(mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), pixel_range=255.0, bgr=True)


def input_norm_of(model: nn.Module) -> InputNorm:
    """The normalisation `model` expects: its backbone's, else ImageNet's (every other network here)."""
    for module in model.modules():
        norm = getattr(module, "input_norm", None)
        if isinstance(norm, InputNorm):
            return norm
    return IMAGENET
