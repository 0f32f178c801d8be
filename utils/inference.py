"""From a model and normalised images to logits, and from a loader to metrics.

- `predict_logits`: whole image or sliding window (`sliding_window`), optionally
  multi-scale and flipped (test-time augmentation), optionally with mirrored
  borders (the U-Net paper's overlap-tile strategy, Fig. 2); or, with
  `protocol='semseg'`, the test protocol of PSPNet's authors (`semseg_probabilities`).
- `evaluate`: the one evaluation loop, shared by the engine's validation and eval.py.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from datasets.base import IGNORE_INDEX
from models.layers import align_corners_of, resize

from .binary_metrics import ScoreHistogram, binary_metrics, class_one_log_odds
from .inference_settings import InferenceConfig
from .metrics import ConfusionMatrix
from .visualize import progress_bar


# ---------------------------------------------------------------- sliding window

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
    with: see utils.transforms) and the padding is cropped off the result.
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


# ---------------------------------------------------------------- the authors' PSPNet protocol

# The test protocol of hszhao/semseg (PSPNet's authors, `tool/test.py`).
# Their published single-scale figures are measured this way, so a converted
# checkpoint reproduces them only under it. Per image and scale s:
#
# 1. resize (bilinear, no antialiasing: OpenCV's INTER_LINEAR) so that the longer
#    side is round(s * long_side) and the other keeps the aspect ratio;
# 2. pad around the centre (floor of half the padding top and left) to at least
#    the crop size with the mean colour (zero once normalised);
# 3. slide crops of `tile` pixels at stride ceil(2/3 tile) (the last crop of a row
#    or column ends at the border), run each crop and its mirror image, and
#    average the *softmax probabilities* of the two and of overlapping crops;
# 4. cut the padding off and resize the probabilities bilinearly (INTER_LINEAR,
#    half-pixel centres) back to the image's size.
#
# Scales average probabilities too. The result is a probability map, whose
# argmax is the prediction (evaluation and predict.py only take the argmax).

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


# ---------------------------------------------------------------- whole image, TTA, mirrored borders

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
    instead (utils/inference.py: crops of `tile` at `stride`, always flipped, after
    resizing the longer side to `long_side`); their argmax is the prediction.
    """
    cfg = cfg or InferenceConfig()

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return model(batch)["out"]

    if cfg.protocol == "semseg":
        return semseg_probabilities(forward, images, num_classes, cfg.tile, cfg.stride, cfg.long_side,
                                    cfg.scales, cfg.tile_batch, flip=True, size=size)
    align_corners = align_corners_of(model)
    margin = cfg.mirror_margin
    if margin:
        original_h, original_w = images.shape[-2:]
        images = mirror_pad(images, margin)

    def run(batch: torch.Tensor) -> torch.Tensor:
        if cfg.mode == "slide":
            return sliding_window(forward, batch, num_classes, cfg.tile, cfg.stride, cfg.tile_batch)
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


# ---------------------------------------------------------------- evaluation

def predicted_classes(output: torch.Tensor, inference: InferenceConfig | None = None,
                      log_odds: torch.Tensor | None = None) -> torch.Tensor:
    """Class ids [N, H, W] of `predict_logits`' output [N, C, H, W]: the argmax, or for two classes
    and a `threshold` other than 0.5, class 1 where its probability exceeds the threshold (its
    log-odds exceed log(t / (1 - t)), which 0.5 makes the argmax's rule, ties going to class 0).
    `log_odds`: the output's class-1 log-odds when the caller has them already."""
    inference = inference or InferenceConfig()
    if inference.threshold == 0.5:
        return output.argmax(1)
    inference.check_classes(output.shape[1])
    if log_odds is None:
        log_odds = class_one_log_odds(output, inference.protocol == "semseg")
    return (log_odds > math.log(inference.threshold / (1 - inference.threshold))).long()


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int, device: torch.device,
             inference: InferenceConfig | None = None, ignore_index: int = IGNORE_INDEX,
             on_batch: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
             progress: bool = False, progress_bars: bool = True, channels_last: bool = False,
             autocast_dtype: torch.dtype | None = None) -> dict:
    """Confusion-matrix metrics of `model` over `loader` (all-reduced under DDP); for two
    classes also sensitivity, specificity, precision, f1, roc_auc and average_precision
    of class 1 (utils.binary_metrics).

    `on_batch(batch_index, images, targets, predictions, logits)` sees every batch,
    for example to save predictions, pick images for TensorBoard or post-process the
    logits (tools/isbi_report.py's cell segments). When the
    loader resized the images but not the masks (a validation `base_size`),
    logits are resized back to the masks' resolution before the argmax, so
    metrics are those of the original labels; `on_batch` then gets the images
    resized to that resolution too. `progress` shows a bar (or, with
    `progress_bars=False` or no terminal, periodic lines; utils.visualize.progress_bar).
    """
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(num_classes, device, ignore_index)
    scores = ScoreHistogram(device, ignore_index) if num_classes == 2 else None
    bar = progress_bar(len(loader), "val", show=progress, bars=progress_bars)
    for index, batch in enumerate(loader):
        bar.update(1)
        if batch is None:  # every sample of the batch was bad and skipped (see utils.data.SkipBadSamples)
            continue
        images, targets = batch
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            # The images may have been resized (eval_transforms' base_size): score at the labels' resolution.
            logits = predict_logits(model, images, num_classes, inference, size=targets.shape[-2:])
        log_odds = None
        if scores is not None:  # the semseg protocol's output is probabilities, not logits
            log_odds = class_one_log_odds(logits, (inference or InferenceConfig()).protocol == "semseg")
            scores.update(log_odds, targets)
        predictions = predicted_classes(logits, inference, log_odds)
        confusion.update(predictions, targets)
        if on_batch is not None:
            on_batch(index, resize(images.float(), targets.shape[-2:]), targets, predictions, logits)
    bar.close()
    confusion.all_reduce()
    model.train(was_training)
    if scores is None:
        return confusion.compute()
    scores.all_reduce()
    return {**confusion.compute(), **binary_metrics(confusion.matrix, scores)}
