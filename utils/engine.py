"""The one training loop.

A training script fills a `TrainConfig` with its paper's hyperparameters and
calls `run(cfg)`. Every field can be overridden from the command line
(`--iters 200 --batch-size 4 --device cpu`), and bad values stop the script
before any work starts. The same script runs on a CPU, one GPU, or many GPUs
under torchrun.
"""
from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import config
import datasets
import models

from . import distributed as dist_utils
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, unwrap
from .cli import parse_config
from .data import EpochBatches, eval_loader, train_loader
from .evaluation import evaluate
from .inference import InferenceConfig
from .joint_transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms, train_transforms
from .losses import SegmentationLoss
from .lr_schedule import poly_lr
from .tb_logging import TensorBoardLogger


def _opt(default, help: str, choices: Sequence | None = None, factory=None):
    metadata = {"help": help}
    if choices is not None:
        metadata["choices"] = list(choices)
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    # what to train
    model: str = _opt("u_net", "registered model name", models.list_models())
    backbone: str | None = _opt(None, "backbone name (default: the model's own)")
    model_kwargs: dict = _opt(None, "extra model options as JSON, e.g. '{\"width\": 16}'", factory=dict)
    pretrained: bool = _opt(False, "start the backbone from ImageNet weights found through config.py")
    init_from: str | None = _opt(None, "initialise weights from this checkpoint (every tensor whose "
                                       "name and shape match), e.g. FCN-16s from FCN-32s")
    dataset: str = _opt("shapes", "registered data set name", datasets.list_datasets())
    data_root: str | None = _opt(None, "data set folder (default: under SEG_DATA, see config.py)")
    dataset_kwargs: dict = _opt(None, "extra data set options as JSON", factory=dict)
    train_split: str = _opt("train", "split to train on")
    val_split: str = _opt("val", "split to validate on")
    # optimisation
    iters: int = _opt(1000, "training iterations (optimiser steps)")
    batch_size: int = _opt(8, "images per step per process")
    optimizer: str = _opt("sgd", "optimiser", ("sgd", "adamw"))
    lr: float = _opt(0.01, "base learning rate")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(1e-4, "weight decay")
    poly_power: float = _opt(0.9, "exponent of the poly LR schedule")
    warmup_iters: int = _opt(0, "linear LR warm-up iterations")
    aux_weight: float = _opt(0.4, "weight of the auxiliary loss where the model has one")
    # augmentation
    crop_size: int = _opt(512, "training crop size (images smaller are padded; masks with 255)")
    scale_min: float = _opt(0.5, "smallest random scale factor")
    scale_max: float = _opt(2.0, "largest random scale factor")
    hflip: bool = _opt(True, "random horizontal flips")
    base_size: int = _opt(0, "resize the shorter side to this before scaling and cropping (0: off)")
    # validation
    val_every: int = _opt(500, "validate and write last.pth every N iterations")
    val_mode: str = _opt("whole", "validation inference", ("whole", "slide"))
    val_tile: int = _opt(512, "sliding-window tile size")
    val_stride: int = _opt(341, "sliding-window stride")
    val_base_size: int = _opt(0, "resize the shorter side of validation images to this (0: off)")
    val_batch_size: int = _opt(1, "validation images per batch")
    val_images: int = _opt(4, "validation images shown in TensorBoard")
    # runtime
    device: str = _opt("auto", "where to train", ("auto", "cpu", "cuda"))
    workers: int = _opt(4, "DataLoader worker processes")
    seed: int = _opt(0, "random seed")
    amp: bool = _opt(False, "mixed precision (bf16 where supported, else fp16 with loss scaling)")
    channels_last: bool = _opt(False, "channels_last memory format")
    compile: bool = _opt(False, "torch.compile the model")
    sync_bn: bool = _opt(True, "SyncBatchNorm when running on several processes")
    log_every: int = _opt(20, "log the training loss every N iterations")
    run_dir: str | None = _opt(None, "folder for checkpoints and TensorBoard events "
                                     "(default: SEG_RUNS/<script folder>)")
    resume: bool = _opt(False, "continue from last.pth in the run folder")
    overwrite: bool = _opt(False, "start afresh in a run folder that holds checkpoints "
                                  "(the old files are moved to a replaced-<time> subfolder)")
    progress: bool = _opt(True, "show a progress bar")

    def validate(self) -> None:
        positive = ("iters", "batch_size", "crop_size", "val_every", "val_tile", "val_stride",
                    "val_batch_size", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < --scale-min <= --scale-max, got {self.scale_min}, {self.scale_max}")
        if self.val_stride > self.val_tile:
            raise ValueError(f"--val-stride {self.val_stride} exceeds --val-tile {self.val_tile}")
        for name in ("workers", "warmup_iters", "base_size", "val_base_size", "val_images", "weight_decay",
                     "aux_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")

    def inference(self) -> InferenceConfig:
        return InferenceConfig(mode=self.val_mode, tile=self.val_tile, stride=self.val_stride)


def run(cfg: TrainConfig, argv: Sequence[str] | None = None) -> dict:
    """Apply command-line overrides to `cfg`, train, and return the best validation metrics."""
    script = Path(sys.argv[0]).resolve().parent.name if argv is None else "run"
    cfg = parse_config(cfg, argv, description=sys.modules["__main__"].__doc__ if argv is None else None)
    return Trainer(cfg, default_name=script).fit()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", dist_utils.local_rank())
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    def __init__(self, cfg: TrainConfig, default_name: str = "run") -> None:
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        dist_utils.init_distributed(self.device.type)
        self.main = dist_utils.is_main()
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else config.runs_dir() / default_name
        self._prepare_run_dir()
        seed_everything(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.train_set = datasets.build_dataset(
            cfg.dataset, cfg.train_split, cfg.data_root,
            train_transforms(cfg.crop_size, (cfg.scale_min, cfg.scale_max), cfg.hflip, cfg.base_size or None),
            **cfg.dataset_kwargs)
        self.val_set = datasets.build_dataset(cfg.dataset, cfg.val_split, cfg.data_root,
                                              eval_transforms(cfg.val_base_size or None), **cfg.dataset_kwargs)
        self.num_classes = self.train_set.num_classes

        pin = self.device.type == "cuda"
        self.batches = EpochBatches(len(self.train_set), cfg.batch_size, cfg.seed,
                                    dist_utils.rank(), dist_utils.world_size())
        self.train_loader = train_loader(self.train_set, self.batches, cfg.workers, pin)
        self.val_loader = eval_loader(self.val_set, cfg.val_batch_size, cfg.workers, pin,
                                      dist_utils.rank(), dist_utils.world_size())

        self.model_kwargs = dict(cfg.model_kwargs)
        if cfg.backbone is not None:
            self.model_kwargs["backbone"] = cfg.backbone
        model = models.build_model(cfg.model, self.num_classes, pretrained=cfg.pretrained, **self.model_kwargs)
        if cfg.init_from:
            self._init_from(model, cfg.init_from)
        if dist_utils.world_size() > 1 and cfg.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        if dist_utils.world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.train_model = torch.compile(self.model) if cfg.compile else self.model

        self.criterion = SegmentationLoss(self.train_set.ignore_index, cfg.aux_weight).to(self.device)
        self.optimizer = self._build_optimizer(model)
        self.scheduler = poly_lr(self.optimizer, cfg.iters, cfg.poly_power, cfg.warmup_iters)
        self.autocast_dtype = self._autocast_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.iteration, self.best_score, self.best_iteration, self.best_metrics = 0, -1.0, 0, {}
        if cfg.resume:
            self._resume()
        self.logger = TensorBoardLogger(self.run_dir, enabled=self.main)

    # ------------------------------------------------------------ setup

    def _prepare_run_dir(self) -> None:
        if not self.main:
            return
        run_dir = self.run_dir
        if self.cfg.resume:
            if not (run_dir / "last.pth").is_file():
                raise SystemExit(f"--resume: no last.pth in {run_dir} to continue from")
        elif (run_dir / "last.pth").exists() or (run_dir / "best.pth").exists():
            if not self.cfg.overwrite:
                raise SystemExit(f"{run_dir} already holds checkpoints of an earlier run; pass --resume to "
                                 f"continue it, --overwrite to start afresh (the old files are kept in a "
                                 f"subfolder), or --run-dir for a new folder")
            backup = run_dir / time.strftime("replaced-%Y%m%d-%H%M%S")
            backup.mkdir()
            for item in run_dir.iterdir():
                if item.is_file():
                    item.rename(backup / item.name)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            probe = run_dir / ".write-test"
            probe.write_bytes(b"0" * 4096)
            probe.unlink()
        except OSError as err:
            raise SystemExit(f"cannot write to run folder {run_dir}: {err}") from None

    def _build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in model.parameters() if p.requires_grad]
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **fused)

    def _autocast_dtype(self) -> torch.dtype | None:
        if not self.cfg.amp:
            return None
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16

    def _init_from(self, model: nn.Module, path: str) -> None:
        source = load_checkpoint(path)["state_dict"]
        own = model.state_dict()
        matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        if not matched:
            raise CheckpointError(f"--init-from {path}: no tensor matches model {self.cfg.model!r}")
        model.load_state_dict(matched, strict=False)
        if self.main:
            print(f"initialised {len(matched)}/{len(own)} tensors from {path}")

    def _resume(self) -> None:
        state = load_checkpoint(self.run_dir / "last.pth", map_location=self.device)
        if state["model"] != self.cfg.model or state["num_classes"] != self.num_classes:
            raise CheckpointError(f"{self.run_dir / 'last.pth'} holds {state['model']} with {state['num_classes']} "
                                  f"classes, not {self.cfg.model} with {self.num_classes}")
        unwrap(self.model).load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = state["iteration"]
        self.best_score, self.best_iteration = state["best_score"], state["best_iteration"]
        self.best_metrics = state["best_metrics"]
        set_rng_state(state["rng"])
        if self.main:
            print(f"resumed from {self.run_dir / 'last.pth'} at iteration {self.iteration}")

    # ------------------------------------------------------------ loop

    def fit(self) -> dict:
        cfg = self.cfg
        model, device = self.train_model, self.device
        model.train()
        steps_per_epoch = len(self.batches)
        self.batches.set_position(*divmod(self.iteration, steps_per_epoch))
        if self.main:
            print(f"training {cfg.model} on {cfg.dataset} ({len(self.train_set)} train / {len(self.val_set)} "
                  f"{cfg.val_split} images) on {device} x{dist_utils.world_size()}, run folder {self.run_dir}")
        bar = tqdm(total=cfg.iters, initial=self.iteration, disable=not (self.main and cfg.progress),
                   dynamic_ncols=True, desc="train")
        running_loss = torch.zeros((), device=device)
        since_log = 0
        while self.iteration < cfg.iters:
            for images, targets in self.train_loader:
                images = images.to(device, non_blocking=True)
                targets = targets.to(device, non_blocking=True)
                if cfg.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
                    loss = self.criterion(model(images), targets)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.iteration += 1
                running_loss += loss.detach()
                since_log += 1
                bar.update(1)
                if self.iteration % cfg.log_every == 0 or self.iteration == cfg.iters:
                    mean_loss = (running_loss / since_log).item()  # the one host sync per log interval
                    running_loss.zero_()
                    since_log = 0
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}")
                    self.logger.scalars({"train/loss": mean_loss, "train/lr": lr}, self.iteration)
                if self.iteration % cfg.val_every == 0 or self.iteration == cfg.iters:
                    self.validate_and_save()
                    model.train()
                if self.iteration >= cfg.iters:
                    break
            self.batches.set_position(self.batches.epoch + 1, 0)
        bar.close()
        self.logger.close()
        summary = self.best_metrics
        if self.main:
            print(f"best mean_iu {self.best_score:.4f} at iteration {self.best_iteration} "
                  f"(acc {summary.get('acc', float('nan')):.4f}, acc_cls {summary.get('acc_cls', float('nan')):.4f}, "
                  f"fwavacc {summary.get('fwavacc', float('nan')):.4f}) -> {self.run_dir / 'best.pth'}")
        dist_utils.cleanup()
        return summary

    def validate_and_save(self) -> dict:
        cfg = self.cfg
        rows: list = []

        def keep_rows(index, images, targets, predictions):
            for i in range(images.shape[0]):
                if len(rows) < cfg.val_images:
                    rows.append((images[i], targets[i], predictions[i]))

        metrics = evaluate(unwrap(self.model), self.val_loader, self.num_classes, self.device, cfg.inference(),
                           self.val_set.ignore_index, on_batch=keep_rows if self.main else None,
                           channels_last=cfg.channels_last, autocast_dtype=self.autocast_dtype)
        if self.main:
            it = self.iteration
            self.logger.scalars({f"val/{k}": metrics[k] for k in ("acc", "acc_cls", "mean_iu", "fwavacc")}, it)
            self.logger.class_iou(metrics["iou"], self.val_set.classes, it)
            self.logger.prediction_grid(rows, self.val_set.palette, IMAGENET_MEAN, IMAGENET_STD, it)
            tqdm.write(f"[{it}/{cfg.iters}] val mean_iu {metrics['mean_iu']:.4f} acc {metrics['acc']:.4f} "
                       f"acc_cls {metrics['acc_cls']:.4f} fwavacc {metrics['fwavacc']:.4f}")
        improved = metrics["mean_iu"] > self.best_score
        if improved:
            self.best_score, self.best_iteration, self.best_metrics = metrics["mean_iu"], self.iteration, metrics
        if self.main:
            state = self.checkpoint_state(metrics)
            save_checkpoint(state, self.run_dir / "last.pth")
            if improved:
                save_checkpoint(state, self.run_dir / "best.pth")
        dist_utils.barrier()
        return metrics

    def checkpoint_state(self, metrics: dict) -> dict:
        cfg = self.cfg
        return {
            "model": cfg.model,
            "model_kwargs": self.model_kwargs,
            "num_classes": self.num_classes,
            "dataset": cfg.dataset,
            "dataset_kwargs": dict(cfg.dataset_kwargs),
            "classes": list(self.val_set.classes),
            "palette": [list(c) for c in self.val_set.palette],
            "state_dict": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "metrics": metrics,
            "best_score": self.best_score,
            "best_iteration": self.best_iteration,
            "best_metrics": self.best_metrics,
            "world_size": dist_utils.world_size(),
            "rng": rng_state(),
            "config": dataclasses.asdict(cfg),
        }
