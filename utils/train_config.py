"""The training configuration: every hyperparameter of a run, with its --help text.

A training script fills a `TrainConfig` with its paper's values; `utils.cli.parse_config`
turns each field into a flag, and `validate` stops bad values before any work starts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch

import datasets
import models

from .callbacks import CALLBACKS, build_callbacks
from .inference_settings import InferenceConfig, validation_field
from .losses import LOSSES, check_loss
from .optim import OPTIMIZERS


class Registered(Sequence):
    """The names in a registry as they are when read (not when this module was imported), so
    that a model or data set registered later, by a user's module or a test, is valid too."""

    def __init__(self, names: Callable[[], list[str]]) -> None:
        self._names = names

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())


def _opt(default, help: str, choices: Sequence | None = None):
    """A config field with its --help text (and valid values); a dict default is copied per instance."""
    if choices is not None and not isinstance(choices, Registered):
        choices = list(choices)
    metadata = {"help": help} if choices is None else {"help": help, "choices": choices}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    # what to train
    model: str = _opt("u_net", "registered model name", Registered(models.list_models))
    backbone: str | None = _opt(None, "backbone name (default: the model's own)")
    model_kwargs: dict = _opt({}, "extra model options as JSON, e.g. '{\"width\": 16}'")
    pretrained: bool = _opt(False, "start the backbone from ImageNet weights found through config.py")
    download: bool = _opt(True, "--pretrained: download a missing ImageNet file from its official URL, verified "
                                "by SHA-256 (docs/weights.md); --no-download or SEG_OFFLINE=1 forbid it")
    init_from: str | None = _opt(None, "initialise weights from this checkpoint (every tensor whose "
                                       "name and shape match), e.g. FCN-16s from FCN-32s")
    dataset: str = _opt("shapes", "registered data set name", Registered(datasets.list_datasets))
    data_root: str | None = _opt(None, "data set folder (default: under SEG_DATA, see config.py)")
    dataset_kwargs: dict = _opt({}, "extra data set options as JSON")
    train_split: str = _opt("train", "split to train on")
    val_split: str = _opt("val", "split to validate on")
    # optimisation
    iters: int = _opt(1000, "training iterations (optimiser steps)")
    batch_size: int = _opt(8, "images per step per process (the global batch is this times the number "
                              "of processes; the LR is not rescaled)")
    optimizer: str = _opt("sgd", "optimiser", OPTIMIZERS)
    lr: float = _opt(0.01, "base learning rate")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(1e-4, "weight decay")
    head_lr_mult: float = _opt(1.0, "learning rate of every layer outside the pretrained backbone, as a multiple "
                                    "of --lr (PSPNet's authors: 10); the poly schedule scales both")
    poly_power: float = _opt(0.9, "exponent of the poly LR schedule")
    warmup_iters: int = _opt(0, "linear LR warm-up iterations")
    loss: str = _opt("ce", f"training loss (utils/losses.py): one of {', '.join(LOSSES)}, or a sum such as "
                           f"ce+dice or ce+0.5*dice")
    loss_kwargs: dict = _opt({}, "loss options as JSON, e.g. '{\"label_smoothing\": 0.1}', '{\"threshold\": 0.7, "
                                 "\"min_kept\": 100000}' (ohem), '{\"gamma\": 2}' (focal); see utils/losses.py")
    aux_weight: float = _opt(0.4, "weight of the auxiliary loss where the model has one (the same rule for "
                                  "every --loss: loss(out) + W * loss(aux))")
    class_weights: str = _opt("none", "loss weight per class, computed from the training masks (cached under "
                                      "SEG_RUNS/class_weights; see utils/class_weights.py): median-freq "
                                      "(Eigen & Fergus; SegNet) or inverse-log (ENet); an option of the loss, as "
                                      "is --loss-kwargs' class_weights", ("none", "median-freq", "inverse-log"))
    pixel_weights: str = _opt("none", "per-pixel loss weight computed from each augmented training mask: "
                                      "unet-border is the U-Net paper's class balance + border weight map "
                                      "(utils/weight_map.py)", ("none", "unet-border"))
    border_class: int = _opt(1, "unet-border: the class whose connected components are the cells (ISBI: 1, cell)")
    border_w0: float = _opt(10.0, "unet-border: w0, the weight of the separation borders (paper: 10)")
    border_sigma: float = _opt(5.0, "unet-border: sigma in pixels (paper: 5)")
    # augmentation
    crop_size: int | tuple[int, int] = _opt(512, "training crop: one size (square) or height width; images "
                                                  "smaller are padded with their mean colour, masks with 255")
    scale_min: float = _opt(0.5, "smallest random scale factor")
    scale_max: float = _opt(2.0, "largest random scale factor")
    hflip: bool = _opt(True, "random horizontal flips")
    vflip: bool = _opt(False, "random vertical flips (for images with no up and down: retinas, cells, aerial views)")
    brightness: float = _opt(0.0, "random brightness: a factor uniform in [1 - B, 1 + B] (0: off)")
    contrast: float = _opt(0.0, "random contrast: a factor uniform in [1 - C, 1 + C] about the mean grey (0: off)")
    gamma: float = _opt(0.0, "random gamma: an exponent log-uniform in [1 / (1 + G), 1 + G] (0: off)")
    precrop: int = _opt(0, "cut a random window of this size first, so that scaling, deformation and rotation "
                           "run on it rather than on the whole image (patch training on large images; 0: off)")
    base_size: int = _opt(0, "resize the shorter side to this before scaling and cropping (0: off)")
    elastic_std: float = _opt(0.0, "elastic deformation before cropping: std in pixels of the random "
                                   "displacements on the coarse grid (U-Net paper: 10; 0: off)")
    elastic_grid: int = _opt(3, "elastic deformation: the coarse grid is N x N (U-Net paper: 3)")
    rotate: float = _opt(0.0, "random rotation by an angle uniform in [-D, D] degrees, applied with probability "
                              "0.5 as hszhao/semseg's RandRotate (PSPNet: 10); the image is filled with its mean "
                              "colour, the mask with 255 (0: off)")
    blur: float = _opt(0.0, "probability of a Gaussian blur (5 x 5 kernel, sigma 1.1: hszhao/semseg's "
                            "RandomGaussianBlur, which applies it with probability 0.5; 0: off)")
    # validation
    val_every: int = _opt(500, "validate and write last.pth every N iterations")
    # how validation runs: the inference settings of utils/inference_settings.py, as --val-<name>
    val_mode: str = validation_field("mode")
    val_protocol: str = validation_field("protocol")
    val_long_side: int = validation_field("long_side")
    val_tile: int = validation_field("tile")
    val_stride: int = validation_field("stride")
    val_tile_batch: int = validation_field("tile_batch")
    val_base_size: int = validation_field("base_size")
    val_batch_size: int = validation_field("batch_size")
    val_scales: tuple[float, ...] = validation_field("scales")
    val_flip: bool = validation_field("flip")
    val_mirror_margin: int = validation_field("mirror_margin")
    val_threshold: float = validation_field("threshold")
    val_images: int = _opt(4, "validation images shown in TensorBoard, spread evenly over the val split (the "
                                 "same ones at every validation; one image tag each)")
    # runtime
    device: str = _opt("auto", "where to train", ("auto", "cpu", "cuda"))
    workers: int = _opt(4, "DataLoader worker processes")
    seed: int = _opt(0, "random seed")
    amp: bool = _opt(False, "mixed precision (bf16 where supported, else fp16 with loss scaling)")
    channels_last: bool = _opt(False, "channels_last memory format")
    compile: bool = _opt(False, "torch.compile the model")
    sync_bn: bool = _opt(True, "SyncBatchNorm when running on several CUDA processes (BatchNorm "
                               "statistics over the global batch)")
    log_every: int = _opt(20, "log the training loss every N iterations")
    run_dir: str | None = _opt(None, "folder for checkpoints and TensorBoard events "
                                     "(default: SEG_RUNS/<script folder>)")
    resume: bool | Literal["auto"] = _opt(False, "continue from last.pth in the run folder; auto: continue "
                                                 "when it is there, else start afresh (one command line for "
                                                 "a job's first start and every restart)")
    overwrite: bool = _opt(False, "start afresh in a run folder that holds checkpoints "
                                  "(the old files are moved to a replaced-<time> subfolder)")
    progress: bool = _opt(True, "show a progress bar")
    skip_bad_samples: bool = _opt(False, "log and skip unreadable or invalid samples instead of stopping "
                                         "(a skipped training sample is replaced by the next good one)")
    max_nonfinite_steps: int = _opt(5, "stop after this many consecutive steps with a non-finite loss or "
                                       "gradient (each is skipped; fp16 AMP leaves this to its loss scaler)")
    callbacks: tuple[str, ...] = _opt((), f"callbacks to run (utils/callbacks.py): {', '.join(CALLBACKS)}")
    callback_kwargs: dict = _opt({}, "callback options as JSON, keyed by callback name, e.g. "
                                     "'{\"snapshots\": {\"every\": 1000}}'")

    def validate(self) -> None:
        for name, valid in (("model", models.list_models()), ("dataset", datasets.list_datasets())):
            if getattr(self, name) not in valid:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of: {', '.join(valid)}")
        for f in dataclasses.fields(self):
            if "choices" in f.metadata and getattr(self, f.name) not in f.metadata["choices"]:
                raise ValueError(f"--{f.name.replace('_', '-')} {getattr(self, f.name)!r} is not one of: "
                                 f"{', '.join(map(str, f.metadata['choices']))}")
        crop = (self.crop_size,) if isinstance(self.crop_size, int) else tuple(self.crop_size)
        if len(crop) not in (1, 2) or any(not isinstance(c, int) or c < 1 for c in crop):
            raise ValueError(f"--crop-size must be one positive size or two (height width), got {self.crop_size}")
        positive = ("iters", "batch_size", "val_every", "log_every", "max_nonfinite_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < --scale-min <= --scale-max, got {self.scale_min}, {self.scale_max}")
        self.inference().validate(flag_prefix="--val-")
        if self.val_mode == "slide" and max(crop) > self.val_tile:
            raise ValueError(f"--crop-size {self.crop_size} exceeds --val-tile {self.val_tile}: sliding-window "
                             f"validation would show the model smaller windows than it was trained on; "
                             f"use --val-tile >= {max(crop)} or --val-mode whole")
        for name in ("workers", "warmup_iters", "base_size", "val_images", "weight_decay",
                     "aux_weight", "border_w0", "border_class", "elastic_std", "rotate",
                     "gamma", "precrop"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not self.head_lr_mult > 0 or not math.isfinite(self.head_lr_mult):
            raise ValueError(f"--head-lr-mult must be a positive number, got {self.head_lr_mult}")
        for name in ("brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"--{name} is the largest relative change: 0 <= x < 1, got {getattr(self, name)}")
        if not 0 <= self.blur <= 1:
            raise ValueError(f"--blur is a probability: 0 <= P <= 1, got {self.blur}")
        if self.rotate > 180:
            raise ValueError(f"--rotate takes the largest angle in degrees, 0..180, got {self.rotate}")
        if not self.border_sigma > 0:
            raise ValueError(f"--border-sigma must be > 0, got {self.border_sigma}")
        if self.elastic_grid < 2:
            raise ValueError(f"--elastic-grid must be >= 2, got {self.elastic_grid}")
        if self.resume not in (False, True, "auto"):
            raise ValueError(f"--resume takes no value or 'auto', got {self.resume!r}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other")
        check_loss(self.loss, self.loss_options())
        build_callbacks(self.callbacks, self.callback_kwargs)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")

    def loss_options(self) -> dict:
        """--loss-kwargs with the shorthand flags --class-weights and --pixel-weights / --border-* folded in
        (they are options of the loss, utils/losses.py); a flag and --loss-kwargs may not disagree."""
        shorthand = {}
        if self.class_weights != "none":
            shorthand["class_weights"] = self.class_weights
        if self.pixel_weights != "none":
            shorthand.update(pixel_weights=self.pixel_weights, border_class=self.border_class,
                             border_w0=self.border_w0, border_sigma=self.border_sigma)
        for key, value in shorthand.items():
            if key in self.loss_kwargs and self.loss_kwargs[key] != value:
                raise ValueError(f"--loss-kwargs sets {key} to {self.loss_kwargs[key]!r}, but "
                                 f"--{key.replace('_', '-')} says {value!r}: give it once")
        return {**shorthand, **self.loss_kwargs}

    def inference(self) -> InferenceConfig:
        """The validation's inference settings (eval.py reads the same from a checkpoint)."""
        return InferenceConfig.from_train_config(self)
