"""The validation images shown in TensorBoard: the same ones at every validation, spread over the split.

The first images of a split are often near copies (CamVid's val frames are a fraction of a
second apart), so `evenly_spaced` picks `count` indices from the first to the last. Each
sample becomes its own image tag, `val_samples/<index>`: image, ground truth and prediction
one above the other, each scaled to a readable width (small images are enlarged with
nearest neighbour so that pixels stay sharp, large ones reduced), under a caption.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from datasets.base import DatasetError
from models.input_norm import InputNorm
from models.layers import resize

from .checkpoint import unwrap
from .inference import predict_logits, predicted_classes
from .inference_settings import InferenceConfig
from .visualize import colorize

PANEL_WIDTH = (320, 512)  # each of the three panels is scaled into this range of widths
GAP = 6


def evenly_spaced(count: int, length: int) -> list[int]:
    """`count` distinct indices spread evenly over range(length), first and last included."""
    if count <= 0 or length <= 0:
        return []
    if count >= length:
        return list(range(length))
    return sorted({int(round(i * (length - 1) / max(count - 1, 1))) for i in range(count)})


@torch.no_grad()
def sample_panels(model: nn.Module, dataset, indices: Sequence[int], num_classes: int, device: torch.device,
                  inference: InferenceConfig, norm: InputNorm, palette: Sequence[Sequence[int]],
                  autocast_dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[int, np.ndarray]:
    """{index: H x W x 3 uint8 picture} for the samples of `dataset` (which yields normalised images
    and masks), predicted as validation predicts them. Unreadable samples are left out."""
    was_training = model.training
    model.eval()
    pictures = {}
    for index in indices:
        try:
            image, target = dataset[index]
        except DatasetError:
            continue  # a bad sample: the validation itself reports (or skips) it
        image = image.as_subclass(torch.Tensor)[None].to(device)
        target = target.as_subclass(torch.Tensor).to(device)
        batch = image.contiguous(memory_format=torch.channels_last) if channels_last else image
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = predict_logits(model, batch, num_classes, inference, size=target.shape[-2:])
        shown = resize(image.float(), target.shape[-2:])[0]  # a validation base_size resized the image only
        pictures[index] = stacked([norm.denormalize(shown), colorize(target, palette),
                                   colorize(predicted_classes(logits, inference)[0], palette)],
                                  f"val #{index}: image, truth, prediction")
    model.train(was_training)
    return pictures


def validation_pictures(trainer) -> dict[int, np.ndarray]:
    """`sample_panels` for a Trainer: its --val-images samples of the val split, spread evenly,
    predicted with its validation settings and precision."""
    cfg = trainer.cfg
    return sample_panels(unwrap(trainer.model), trainer.val_set, evenly_spaced(cfg.val_images, len(trainer.val_set)),
                         trainer.num_classes, trainer.device, cfg.inference(), trainer.input_norm,
                         trainer.val_set.palette, trainer.autocast_dtype, cfg.channels_last)


def stacked(panels: list[torch.Tensor], caption: str) -> np.ndarray:
    """uint8 [3, H, W] panels one above the other, scaled to a readable width, under `caption`.

    One above the other, not side by side: TensorBoard fits every image into a card about
    350 pixels wide, so three panels in a row would each be shown about 115 pixels wide.
    """
    height, width = panels[0].shape[-2:]
    low, high = PANEL_WIDTH
    if width < low:
        scale = float(-(-low // width))  # a whole factor: nearest-neighbour enlargement stays sharp
    else:
        scale = min(1.0, high / width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    mode = "nearest" if scale >= 1 else "area"
    scaled = [F.interpolate(p[None].float(), size=size, mode=mode)[0].round().clamp(0, 255).byte().cpu()
              for p in panels]
    font = ImageFont.load_default(size=16)
    top = 24
    canvas = Image.new("RGB", (size[1], top + len(scaled) * size[0] + (len(scaled) - 1) * GAP), "white")
    ImageDraw.Draw(canvas).text((4, 3), caption, fill="black", font=font)
    for i, panel in enumerate(scaled):
        canvas.paste(Image.fromarray(panel.permute(1, 2, 0).numpy()), (0, top + i * (size[0] + GAP)))
    return np.asarray(canvas)
