"""TensorBoard logging of scalars and prediction grids; silent on non-main ranks."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torchvision.utils import make_grid

from models.input_norm import InputNorm

from .visualize import colorize


class TensorBoardLogger:
    def __init__(self, log_dir: Path | str, enabled: bool = True) -> None:
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def class_iou(self, iou: Sequence[float], classes: Sequence[str], step: int) -> None:
        if self.writer is not None:
            for name, value in zip(classes, iou):
                if value == value:  # skip NaN: class absent from this split
                    self.writer.add_scalar(f"val_iou/{name}", value, step)

    def prediction_grid(self, rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                        palette: Sequence[Sequence[int]], norm: InputNorm, step: int) -> None:
        """One row per image: image | ground truth | prediction, in the data set's palette."""
        if self.writer is None or not rows:
            return
        tiles = []
        for image, target, prediction in rows:
            tiles += [norm.denormalize(image).cpu(), colorize(target, palette).cpu(),
                      colorize(prediction, palette).cpu()]
        height = max(t.shape[1] for t in tiles)
        width = max(t.shape[2] for t in tiles)
        tiles = [torch.nn.functional.pad(t, (0, width - t.shape[2], 0, height - t.shape[1])) for t in tiles]
        self.writer.add_image("val/image_truth_prediction", make_grid(tiles, nrow=3, padding=2), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
