"""What a person looks at: class maps coloured with a data set's palette (PNGs,
overlays), the TensorBoard logger (scalars, per-class IoU, prediction grids, the
run's config; silent on non-main ranks) and progress displays."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from datasets.base import IGNORE_INDEX

from .event_log import SafeEventWriter


IGNORE_COLOUR = (255, 255, 255)


def palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """A 256 x 3 uint8 table: class colours, white for the ignore index 255, black elsewhere."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    table[IGNORE_INDEX] = IGNORE_COLOUR
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


class TensorBoardLogger:
    def __init__(self, log_dir: Path | str, enabled: bool = True) -> None:
        self.writer = None
        if enabled:  # a failed write (a full disk) is reported once and never stops the run
            self.writer = SafeEventWriter(log_dir)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def class_iou(self, iou: Sequence[float], classes: Sequence[str], step: int) -> None:
        if self.writer is not None:
            for name, value in zip(classes, iou):
                if value == value:  # skip NaN: class absent from this split
                    self.writer.add_scalar(f"val_iou/{name}", value, step)

    def config(self, values: dict, step: int) -> None:
        """Every setting of the run as a two-column Markdown table (TensorBoard's Text tab)."""
        if self.writer is not None:
            rows = "\n".join(f"| {name} | `{value}` |" for name, value in values.items())
            self.writer.add_text("config", "| setting | value |\n|---|---|\n" + rows, step)

    def hparams(self, values: dict, metrics: dict[str, float]) -> None:
        """The run's settings beside its figures (TensorBoard's HParams tab, one row per run).

        Only the HParams summaries are written, naming the `val/<metric>` curves already in the
        run, whose last values the tab shows: SummaryWriter.add_hparams would also write each
        figure as a one-point scalar chart (`hparam/...` at step 0) above the real curves."""
        if self.writer is not None:
            from torch.utils.tensorboard.summary import hparams as hparams_summaries
            plain = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}
            for summary in hparams_summaries(plain, {f"val/{k}": v for k, v in metrics.items()}):
                self.writer.add_summary(summary)

    def samples(self, pictures: dict[int, np.ndarray], step: int) -> None:
        """One image tag per validation sample (utils/val_samples.py): `val_samples/<index>`."""
        if self.writer is not None:
            for index, picture in pictures.items():
                self.writer.add_image(f"val_samples/{index:05d}", picture, step, dataformats="HWC")

    def confusion(self, counts, classes: Sequence[str], step: int) -> None:
        """The row-normalised confusion matrix as a picture (utils/confusion_figure.py)."""
        if self.writer is not None:
            from .confusion_figure import confusion_image
            self.writer.add_image("val/confusion_matrix", np.asarray(confusion_image(counts, classes)), step,
                                  dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---------------------------------------------------------------- progress

def progress_bar(total: int, desc: str, show: bool = True, bars: bool = True, initial: int = 0,
                 interval: float = 30.0) -> "ProgressLines | ProgressBar | NoProgress":
    """A progress display for a loop of `total` steps.

    In a terminal it is a tqdm bar with an ETA. With `bars=False` (--no-progress)
    or when stderr is not a terminal (a log file, a batch job) it becomes a line
    on stdout every `interval` seconds, with the same figures, so that logs stay
    readable; a loop shorter than `interval` prints nothing. `show=False` (every
    rank but the main one) prints nothing at all.
    """
    if not show:
        return NoProgress()
    if bars and sys.stderr.isatty():
        return ProgressBar(total, desc, initial)
    return ProgressLines(total, desc, initial, interval)


class NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values) -> None:
        pass

    def write(self, message: str, file=None) -> None:
        print(message, file=file or sys.stdout, flush=True)

    def close(self) -> None:
        pass


class ProgressBar(NoProgress):
    def __init__(self, total: int, desc: str, initial: int = 0) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=desc == "train")

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, **values) -> None:
        self.bar.set_postfix(values)

    def write(self, message: str, file=None) -> None:
        tqdm.write(message, file=file)

    def close(self) -> None:
        self.bar.close()


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class ProgressLines(NoProgress):
    def __init__(self, total: int, desc: str, initial: int = 0, interval: float = 30.0) -> None:
        self.total, self.desc, self.interval = total, desc, interval
        self.done = self.first = initial
        self.start = self.last = time.perf_counter()
        self.postfix: dict = {}

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            rate = (self.done - self.first) / (now - self.start)
            eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
            print(f"{self.desc} {self.done}/{self.total} ({100 * self.done / max(self.total, 1):.0f}%), "
                  f"{format_duration(now - self.start)} elapsed, ETA {eta}{extra}", flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = values
