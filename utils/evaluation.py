"""The one evaluation loop, shared by the engine's validation and eval.py."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.layers import resize

from .inference import InferenceConfig, predict_logits
from .metrics import ConfusionMatrix


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, num_classes: int, device: torch.device,
             inference: InferenceConfig | None = None, ignore_index: int = 255,
             on_batch: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
             progress: bool = False, channels_last: bool = False,
             autocast_dtype: torch.dtype | None = None) -> dict:
    """Confusion-matrix metrics of `model` over `loader` (all-reduced under DDP).

    `on_batch(batch_index, images, targets, predictions)` sees every batch,
    for example to save predictions or pick images for TensorBoard. When the
    loader resized the images but not the masks (a validation `base_size`),
    logits are resized back to the masks' resolution before the argmax, so
    metrics are those of the original labels; `on_batch` then gets the images
    resized to that resolution too.
    """
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(num_classes, device, ignore_index)
    for index, batch in enumerate(tqdm(loader, desc="eval", disable=not progress, leave=False)):
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
        predictions = logits.argmax(1)
        confusion.update(predictions, targets)
        if on_batch is not None:
            on_batch(index, resize(images.float(), targets.shape[-2:]), targets, predictions)
    confusion.all_reduce()
    model.train(was_training)
    return confusion.compute()
