"""Shapes: a generated segmentation data set that needs no download.

Each image holds one to three filled shapes (circle, square, triangle) at random
positions, sizes, rotations and colours, on a textured, noisy background. The
class is defined by the outline alone: every shape's colour is drawn from the
same distribution, so colour says nothing and a model must learn geometry.
Sample `i` of a split is a pure function of (seed, split, i), so a data set
is identical in every process, worker and run.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors

from .base import SegmentationDataset

SPLITS = {"train": (0, 2000), "val": (1, 200), "test": (2, 200)}


class Shapes(SegmentationDataset):
    classes = ("background", "circle", "square", "triangle")
    palette = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200))

    def __init__(self, root=None, split: str = "train", transforms=None, *, size: int = 64,
                 length: int | None = None, seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown shapes split {split!r}; choose one of {', '.join(SPLITS)}")
        if size < 32:
            raise ValueError(f"shapes size must be >= 32 pixels, got {size}")
        super().__init__(split, transforms)
        self.size = size
        self.seed = seed
        self.split_id, default_length = SPLITS[split]
        self.length = default_length if length is None else length

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        if not 0 <= index < self.length:
            raise IndexError(f"shapes index {index} out of range 0..{self.length - 1}")
        rng = np.random.default_rng([self.seed, self.split_id, index])
        image, mask = render_sample(rng, self.size)
        return (tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                tv_tensors.Mask(torch.from_numpy(mask)))


def render_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (uint8 H x W x 3 image, int64 H x W mask) pair."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image, background_colours = _background(rng, size, yy, xx)
    mask = np.zeros((size, size), dtype=np.int64)
    occupied = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        for _attempt in range(10):  # rejection sampling keeps shapes apart
            label = int(rng.integers(1, 4))
            radius = rng.uniform(0.12, 0.22) * size
            cy, cx = rng.uniform(radius, size - radius, size=2)
            inside = _shape_mask(label, yy - cy, xx - cx, radius, rng.uniform(0, 2 * np.pi))
            if not (inside & occupied).any():
                break
        else:
            continue
        occupied |= _grow(inside)
        mask[inside] = label
        colour = _contrasting_colour(rng, background_colours)
        shading = rng.normal(0, 3, size=(size, size, 1))
        image[inside] = np.clip(colour + shading[inside], 0, 255)
    return image.astype(np.uint8), mask


def _contrasting_colour(rng: np.random.Generator, avoid: np.ndarray, min_distance: float = 90.0) -> np.ndarray:
    """A random colour at least `min_distance` (RGB, Euclidean) from each colour in `avoid`,
    so that every shape is visible; its hue still says nothing about its class."""
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        if np.linalg.norm(avoid - colour, axis=1).min() >= min_distance:
            return colour
    return 255 - avoid.mean(0)


def _background(rng: np.random.Generator, size: int, yy: np.ndarray,
                xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Random smooth stripes and blobs in two random colours, plus pixel noise;
    returns the image and its two colours."""
    texture = np.zeros((size, size), dtype=np.float32)
    for _ in range(3):
        freq = rng.uniform(0.05, 0.4)
        angle = rng.uniform(0, np.pi)
        texture += np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    t = (texture / 6 + 0.5)[..., None]
    a, b = rng.uniform(0, 255, size=(2, 3))
    noise = rng.normal(0, 25, size=(size, size, 3))
    return np.clip(a * t + b * (1 - t) + noise, 0, 255).astype(np.float32), np.stack([a, b])


def _shape_mask(label: int, dy: np.ndarray, dx: np.ndarray, radius: float, angle: float) -> np.ndarray:
    if label == 1:  # circle
        return dy ** 2 + dx ** 2 <= radius ** 2
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    if label == 2:  # square with the circle's area
        half = radius * np.sqrt(np.pi) / 2
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # equilateral triangle in a circle 1.4 times the radius: about the circle's area
    r = 1.4 * radius
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        theta = 2 * np.pi * k / 3
        inside &= np.cos(theta) * u + np.sin(theta) * v <= r / 2
    return inside


def _grow(mask: np.ndarray, pixels: int = 2) -> np.ndarray:
    grown = mask.copy()
    for shift in range(1, pixels + 1):
        for axis in (0, 1):
            grown |= np.roll(mask, shift, axis) | np.roll(mask, -shift, axis)
    return grown
