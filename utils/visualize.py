"""Colouring class-id maps with a data set's palette, for TensorBoard and PNGs."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

IGNORE_COLOUR = (255, 255, 255)


def palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """A 256 x 3 uint8 table: class colours, white for the ignore index 255, black elsewhere."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    table[255] = IGNORE_COLOUR
    return table


def colorize(mask: torch.Tensor, palette: Sequence[Sequence[int]]) -> torch.Tensor:
    """uint8 [3, H, W] colour image of an [H, W] class-id map."""
    table = torch.from_numpy(palette_array(palette)).to(mask.device)
    return table[mask.long().clamp(0, 255)].permute(2, 0, 1)


def save_palette_png(mask: np.ndarray, palette: Sequence[Sequence[int]], path) -> None:
    """Write class ids as an indexed ('P') PNG: pixel values stay class ids, viewers show colours."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette_array(palette).flatten().tolist())
    image.save(path)


def overlay(image: np.ndarray, mask: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend an H x W x 3 uint8 image with its coloured class map."""
    colours = palette_array(palette)[mask.astype(np.int64).clip(0, 255)]
    return (image.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)
