"""A checkpoint's model, ready to segment images the way its run validated them.

    predictor = Predictor.from_checkpoint("runs/shapes-u-net/best.pth", tile=256)
    logits = predictor.segment(image)          # uint8 [3, H, W] -> logits [1, C, H, W]
    metrics = predictor.evaluate(predictor.loader(predictor.dataset("val")))

eval.py, predict.py, tools/isbi_report.py and tools/results_figure.py all load
checkpoints through `Predictor.from_checkpoint`: the model the checkpoint describes,
its input normalisation, and its inference settings (utils/inference_settings.py:
the run's validation settings and precision, overridden by keyword) in one object.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import datasets
from models.input_norm import InputNorm

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .data import eval_loader
from .inference import evaluate, predict_logits
from .inference_settings import InferenceConfig
from .runtime import autocast_dtype, pick_device
from .transforms import eval_transforms


class Predictor:
    """The model of a checkpoint in eval mode on `device`, with `settings` (how to run it) and
    `input_norm` (how its images are normalised). `checkpoint` is the checkpoint's dict."""

    def __init__(self, checkpoint: dict, model: nn.Module, settings: InferenceConfig, device: torch.device) -> None:
        self.checkpoint = checkpoint
        self.settings = settings
        self.device = device
        self.model = model.to(device).eval()
        if settings.channels_last:  # as the engine converts it, so that validation figures repeat
            self.model.to(memory_format=torch.channels_last)
        # The engine's own rule (runtime.autocast_dtype), so that eval.py reproduces the run's validation.
        self.autocast_dtype = autocast_dtype(device) if settings.amp else None
        self.input_norm = InputNorm.from_dict(checkpoint["input_norm"])

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        program: str | None = None, **overrides: Any) -> Predictor:
        """Load the checkpoint at `path` onto `device` ("auto": CUDA when there is one), with its
        validation settings overridden by `overrides` (InferenceConfig fields; None: the
        checkpoint's). A bad checkpoint raises CheckpointError and settings that cannot run
        raise ValueError; with `program` given, either is a clean exit naming the program."""
        try:
            state = load_checkpoint(path)
            settings = InferenceConfig.from_train_config(state["config"], **overrides)
            settings.validate(flag_prefix="--")
            settings.check_classes(state["num_classes"], flag_prefix="--")
            model = model_from_checkpoint(state)
        except (CheckpointError, ValueError) as err:
            if program is None:
                raise
            raise SystemExit(f"{program}: {err}") from None
        device = device if isinstance(device, torch.device) else pick_device(device)
        return cls(state, model, settings, device)

    # ------------------------------------------------------------ what the checkpoint says

    @property
    def num_classes(self) -> int:
        return self.checkpoint["num_classes"]

    @property
    def classes(self) -> list[str]:
        return self.checkpoint["classes"]

    @property
    def palette(self) -> list:
        return self.checkpoint["palette"]

    @property
    def train_config(self) -> dict:
        return self.checkpoint["config"]

    def describe(self) -> str:
        """One line saying how the checkpoint was trained: model and options, data, schedule,
        optimiser, crops, precision, and the code it came from when recorded."""
        state, cfg = self.checkpoint, self.train_config
        origin = state.get("provenance") or {}
        kwargs = f" {state.get('model_kwargs')}" if state.get("model_kwargs") else ""
        crop = cfg.get("crop_size")
        parts = [f"trained: {state.get('model')}{kwargs} on {state.get('dataset')} {cfg.get('train_split', '?')}",
                 f"iteration {state.get('iteration')}/{cfg.get('iters', '?')}",
                 f"batch {cfg.get('batch_size')} x {state.get('world_size', 1)}",
                 f"{cfg.get('optimizer')} lr {cfg.get('lr')} wd {cfg.get('weight_decay')} poly {cfg.get('poly_power')}",
                 f"crop {crop if isinstance(crop, int) else 'x'.join(map(str, crop or ()))} "
                 f"scale {cfg.get('scale_min')}-{cfg.get('scale_max')}",
                 f"loss {cfg.get('loss', 'ce')}{' ' + str(cfg['loss_kwargs']) if cfg.get('loss_kwargs') else ''}",
                 f"class weights {cfg.get('class_weights', 'none')}"]
        parts += ["amp"] * bool(cfg.get("amp")) + ["channels_last"] * bool(cfg.get("channels_last"))
        if origin.get("git_commit"):
            parts.append(f"git {origin['git_commit'][:10]}{' (dirty)' if origin.get('git_dirty') else ''}, "
                         f"torch {origin.get('torch')}")
        return ", ".join(parts)

    # ------------------------------------------------------------ data

    def transforms(self) -> Callable:
        """Joint transforms of (image, mask) as the run validated: the image resized to the base
        size (when set) and normalised; the mask untouched."""
        return eval_transforms(self.settings.base_size or None, norm=self.input_norm)

    def dataset(self, split: str | None = None, data_root: str | None = None,
                options: dict | None = None) -> Dataset:
        """A split of the checkpoint's data set (default: its validation split and folder); `options`
        replace data set options of the same name (e.g. the folders of DRIVE's test half)."""
        cfg = self.train_config
        return datasets.build_dataset(self.checkpoint["dataset"], split or cfg["val_split"],
                                      data_root or cfg["data_root"], self.transforms(),
                                      **{**self.checkpoint["dataset_kwargs"], **(options or {})})

    def loader(self, dataset: Dataset, workers: int = 0, batch_size: int | None = None) -> DataLoader:
        """Batches of `dataset` (default: the settings' batch size)."""
        return eval_loader(dataset, batch_size or self.settings.batch_size, workers, self.device.type == "cuda")

    # ------------------------------------------------------------ inference

    @torch.no_grad()
    def logits(self, images: torch.Tensor, size: tuple[int, int] | torch.Size | None = None) -> torch.Tensor:
        """Logits [N, C, H, W] (the semseg protocol: probabilities) of normalised `images`
        [N, 3, H, W], at the images' size or at `size`, under the settings and precision."""
        images = images.to(self.device)
        if self.settings.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        dtype = self.autocast_dtype
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return predict_logits(self.model, images, self.num_classes, self.settings, size=size)

    def segment(self, image: torch.Tensor) -> torch.Tensor:
        """Logits [1, C, H, W] of one uint8 RGB image [3, H, W], at the image's own size
        (resized to the base size for the model when one is set)."""
        height, width = image.shape[-2:]
        batch = self.transforms()(image)[None].as_subclass(torch.Tensor)
        return self.logits(batch, size=(height, width))

    def evaluate(self, loader: DataLoader, ignore_index: int, on_batch: Callable | None = None,
                 progress: bool = False, progress_bars: bool = True) -> dict:
        """Confusion-matrix metrics over `loader` (see utils.inference.evaluate for `on_batch`)."""
        return evaluate(self.model, loader, self.num_classes, self.device, self.settings, ignore_index,
                        on_batch=on_batch, progress=progress, progress_bars=progress_bars,
                        channels_last=self.settings.channels_last, autocast_dtype=self.autocast_dtype)
