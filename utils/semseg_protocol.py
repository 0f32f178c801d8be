"""The test protocol of hszhao/semseg (PSPNet's authors, `tool/test.py`), on normalised images.

Their published single-scale figures are measured this way, so a converted
checkpoint reproduces them only under it. Per image and scale s:

1. resize (bilinear, no antialiasing: OpenCV's INTER_LINEAR) so that the longer
   side is round(s * long_side) and the other keeps the aspect ratio;
2. pad around the centre (floor of half the padding top and left) to at least
   the crop size with the mean colour (zero once normalised);
3. slide crops of `tile` pixels at stride ceil(2/3 tile) (the last crop of a row
   or column ends at the border), run each crop and its mirror image, and
   average the *softmax probabilities* of the two and of overlapping crops;
4. cut the padding off and resize the probabilities bilinearly (INTER_LINEAR,
   half-pixel centres) back to the image's size.

Scales average probabilities too. The result is a probability map, whose
argmax is the prediction (evaluation and predict.py only take the argmax).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .sliding_window import sliding_window


def semseg_stride(tile: int) -> int:
    """The authors' crop stride: ceil(2/3 of the crop)."""
    return math.ceil(tile * 2 / 3)


def long_side_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) with the longer side `long_side`, rounded as their test.py rounds
    (Python's round: halves go to the even neighbour)."""
    if height > width:
        return long_side, round(long_side / height * width)
    return round(long_side / width * height), long_side


def semseg_probabilities(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, num_classes: int,
                         tile: int, stride: int, long_side: int, scales: Sequence[float] = (1.0,),
                         batch_size: int = 4, flip: bool = True,
                         size: tuple[int, int] | torch.Size | None = None) -> torch.Tensor:
    """Probabilities [N, C, H, W] for normalised `images` [N, 3, H, W] (at `size` when given).

    `forward` maps a batch of crops to logits at the crops' size. `long_side` 0 keeps the
    images' own size (at scale 1). `flip` averages each crop with its mirror image, as the
    authors' test always does.
    """
    height, width = images.shape[-2:]
    out_size = tuple(size) if size is not None else (height, width)

    def softmax(logits: torch.Tensor) -> torch.Tensor:  # in float32 at least (under autocast too)
        return logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(1)

    def crop_probabilities(crops: torch.Tensor) -> torch.Tensor:
        if not flip:
            return softmax(forward(crops))
        both = softmax(forward(torch.cat([crops, crops.flip(-1)])))
        n = crops.shape[0]
        return (both[:n] + both[n:].flip(-1)) / 2

    total = None
    for scale in scales:
        if long_side:
            new_h, new_w = long_side_size(height, width, round(scale * long_side))
        else:
            new_h, new_w = round(scale * height), round(scale * width)
        scaled = images if (new_h, new_w) == (height, width) else F.interpolate(
            images, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
        pad_h, pad_w = max(tile - new_h, 0), max(tile - new_w, 0)
        top, left = pad_h // 2, pad_w // 2
        padded = F.pad(scaled, (left, pad_w - left, top, pad_h - top))  # zero: the normalised mean colour
        probabilities = sliding_window(crop_probabilities, padded, num_classes, tile, stride, batch_size)
        probabilities = probabilities[..., top:top + new_h, left:left + new_w]
        if (new_h, new_w) != out_size:
            probabilities = F.interpolate(probabilities, size=out_size, mode="bilinear", align_corners=False)
        total = probabilities if total is None else total + probabilities
    return total / len(scales)
