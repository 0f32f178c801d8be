"""Sliding-window inference: overlapping tiles, batched, logits averaged where tiles overlap."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length); the last tile ends at `length`."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def sliding_window(predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, num_classes: int,
                   tile: int | tuple[int, int], stride: int | tuple[int, int], batch_size: int = 4) -> torch.Tensor:
    """Logits [N, C, H, W] for `images` [N, 3, H, W], computed tile by tile.

    `predict` maps a batch of tiles to logits of the same size. Images smaller
    than the tile are zero-padded at the bottom and right (zero is the mean
    colour after normalisation, which is also what training crops are padded
    with: see utils.joint_transforms) and the padding is cropped off the result.
    Tiles from all images are batched together, `batch_size` at a time.
    """
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    stride_h, stride_w = (stride, stride) if isinstance(stride, int) else stride
    if min(tile_h, tile_w, stride_h, stride_w) < 1:
        raise ValueError(f"tile and stride must be positive, got tile={tile}, stride={stride}")
    if stride_h > tile_h or stride_w > tile_w:
        raise ValueError(f"stride {stride} larger than tile {tile} would leave gaps")
    n, _, height, width = images.shape
    padded = F.pad(images, (0, max(0, tile_w - width), 0, max(0, tile_h - height)))
    full_h, full_w = padded.shape[-2:]
    windows = [(i, y, x) for i in range(n)
               for y in tile_starts(full_h, tile_h, stride_h)
               for x in tile_starts(full_w, tile_w, stride_w)]
    logits = None
    counts = torch.zeros(n, 1, full_h, full_w, device=images.device)
    for first in range(0, len(windows), batch_size):
        chunk = windows[first:first + batch_size]
        tiles = torch.stack([padded[i, :, y:y + tile_h, x:x + tile_w] for i, y, x in chunk])
        out = predict(tiles)
        if logits is None:
            # float32 at least (sums of fp16 / bf16 tiles would lose precision), float64 when given it
            dtype = torch.promote_types(out.dtype, torch.float32)
            logits = torch.zeros(n, num_classes, full_h, full_w, device=images.device, dtype=dtype)
        for (i, y, x), tile_logits in zip(chunk, out):
            logits[i, :, y:y + tile_h, x:x + tile_w] += tile_logits.to(logits.dtype)
            counts[i, :, y:y + tile_h, x:x + tile_w] += 1
    return (logits / counts)[..., :height, :width]
