"""The one training loop.

A training script fills a `TrainConfig` with its paper's hyperparameters and
calls `run(cfg)`. Every field can be overridden from the command line
(`--iters 200 --batch-size 4 --device cpu`), and bad values stop the script
before any work starts. The same script runs on a CPU, one GPU, or many GPUs
under torchrun.

A script that needs more than settings (another loss, parameter groups, an
augmentation, something done after each step) subclasses `Trainer`, overrides
the builder it needs, and calls `run(cfg, trainer=ItsTrainer)`; see the
`Trainer` docstring and train/isbi-u-net-dice/train.py.
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record

import config
import datasets
import models
from models.input_norm import InputNorm, input_norm_of

from . import runtime
from .binary_metrics import BINARY_KEYS, format_binary
from .checkpoint import (CheckpointError, load_checkpoint, provenance, save_checkpoint, unwrap,
                         write_run_config)
from .class_weights import compute_class_weights, format_weights
from .cli import parse_config
from .data import ResumableBatchSampler, eval_loader, train_loader
from .faults import (NonFiniteGuard, StopSignals, check_free_space, checkpoint_bytes, finite_weights,
                     remove_stale_temporaries)
from .inference import InferenceConfig, evaluate, semseg_stride
from .losses import SegmentationLoss
from .optim import OPTIMIZERS, build_optimizer, param_groups, poly_lr
from .runtime import autocast_dtype, pick_device, rng_state, seed_everything, set_rng_state
from .transforms import eval_transforms, train_transforms
from .visualize import TensorBoardLogger, progress_bar
from .weight_map import UNetBorderWeights


def _opt(default, help: str, choices: Sequence | None = None):
    """A config field with its --help text (and valid values); a dict default is copied per instance."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": list(choices)}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    # what to train
    model: str = _opt("u_net", "registered model name", models.list_models())
    backbone: str | None = _opt(None, "backbone name (default: the model's own)")
    model_kwargs: dict = _opt({}, "extra model options as JSON, e.g. '{\"width\": 16}'")
    pretrained: bool = _opt(False, "start the backbone from ImageNet weights found through config.py")
    init_from: str | None = _opt(None, "initialise weights from this checkpoint (every tensor whose "
                                       "name and shape match), e.g. FCN-16s from FCN-32s")
    dataset: str = _opt("shapes", "registered data set name", datasets.list_datasets())
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
    aux_weight: float = _opt(0.4, "weight of the auxiliary loss where the model has one")
    class_weights: str = _opt("none", "loss weight per class, computed from the training masks (cached under "
                                      "SEG_RUNS/class_weights; see utils/class_weights.py): median-freq "
                                      "(Eigen & Fergus; SegNet) or inverse-log (ENet)", ("none", "median-freq", "inverse-log"))
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
    val_mode: str = _opt("whole", "validation inference", ("whole", "slide"))
    val_protocol: str = _opt("default", "validation protocol: semseg is the test of PSPNet's authors (crops of "
                                        "--val-tile at stride ceil(2/3 tile) around the longer side resized to "
                                        "--val-long-side, flipped, probabilities averaged; see eval.py)",
                             ("default", "semseg"))
    val_long_side: int = _opt(0, "semseg protocol: resize the longer side of validation images to this "
                                 "(their base_size; 0: off)")
    val_tile: int = _opt(512, "sliding-window tile size")
    val_stride: int = _opt(341, "sliding-window stride")
    val_base_size: int = _opt(0, "resize the shorter side of validation images to this for the model; "
                                 "metrics stay at the labels' original resolution (0: off)")
    val_batch_size: int = _opt(1, "validation images per batch")
    val_mirror_margin: int = _opt(0, "reflect-pad validation images by this many pixels before inference and "
                                     "crop the logits back (the U-Net paper's overlap-tile with mirrored borders)")
    val_images: int = _opt(4, "validation images shown in TensorBoard")
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
    resume: bool = _opt(False, "continue from last.pth in the run folder")
    overwrite: bool = _opt(False, "start afresh in a run folder that holds checkpoints "
                                  "(the old files are moved to a replaced-<time> subfolder)")
    progress: bool = _opt(True, "show a progress bar")
    skip_bad_samples: bool = _opt(False, "log and skip unreadable or invalid samples instead of stopping "
                                         "(a skipped training sample is replaced by the next good one)")
    max_nonfinite_steps: int = _opt(5, "stop after this many consecutive steps with a non-finite loss or "
                                       "gradient (each is skipped; fp16 AMP leaves this to its loss scaler)")

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
        positive = ("iters", "batch_size", "val_every", "val_tile", "val_stride",
                    "val_batch_size", "log_every", "max_nonfinite_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < --scale-min <= --scale-max, got {self.scale_min}, {self.scale_max}")
        if self.val_stride > self.val_tile and self.val_protocol != "semseg":  # semseg derives its stride
            raise ValueError(f"--val-stride {self.val_stride} exceeds --val-tile {self.val_tile}")
        if self.val_mode == "slide" and max(crop) > self.val_tile:
            raise ValueError(f"--crop-size {self.crop_size} exceeds --val-tile {self.val_tile}: sliding-window "
                             f"validation would show the model smaller windows than it was trained on; "
                             f"use --val-tile >= {max(crop)} or --val-mode whole")
        for name in ("workers", "warmup_iters", "base_size", "val_base_size", "val_images", "weight_decay",
                     "aux_weight", "border_w0", "border_class", "elastic_std", "val_mirror_margin", "rotate",
                     "val_long_side"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not self.head_lr_mult > 0 or not math.isfinite(self.head_lr_mult):
            raise ValueError(f"--head-lr-mult must be a positive number, got {self.head_lr_mult}")
        if not 0 <= self.blur <= 1:
            raise ValueError(f"--blur is a probability: 0 <= P <= 1, got {self.blur}")
        if self.rotate > 180:
            raise ValueError(f"--rotate takes the largest angle in degrees, 0..180, got {self.rotate}")
        if not self.border_sigma > 0:
            raise ValueError(f"--border-sigma must be > 0, got {self.border_sigma}")
        if self.elastic_grid < 2:
            raise ValueError(f"--elastic-grid must be >= 2, got {self.elastic_grid}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite contradict each other")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but no CUDA device is available")

    def inference(self) -> InferenceConfig:
        # The authors' stride follows the crop (eval.py applies the same rule).
        stride = semseg_stride(self.val_tile) if self.val_protocol == "semseg" else self.val_stride
        return InferenceConfig(mode=self.val_mode, tile=self.val_tile, stride=stride,
                               mirror_margin=self.val_mirror_margin, protocol=self.val_protocol,
                               long_side=self.val_long_side)




def run(cfg: TrainConfig, argv: Sequence[str] | None = None, trainer: type[Trainer] | None = None) -> dict:
    """Apply command-line overrides to `cfg`, train with `trainer` (a `Trainer` subclass, or
    `Trainer` itself), and return the best validation metrics."""
    script = Path(sys.argv[0]).resolve().parent.name if argv is None else "run"
    cfg = parse_config(cfg, argv, description=sys.modules["__main__"].__doc__ if argv is None else None)
    trainer_class = trainer or Trainer

    def train() -> dict:
        return trainer_class(cfg, default_name=script).fit()

    if runtime.launched_by_torchrun():
        # A rank that raises exits non-zero; torchrun then stops the other ranks (which
        # would otherwise wait in a collective) and, thanks to @record, prints this
        # rank's traceback in its failure summary.
        train = record(train)
    try:
        return train()
    except (CheckpointError, datasets.DatasetError) as err:
        raise SystemExit(f"error: {err}") from None


@dataclass
class RunState:
    """Where a run stands. All of it is written into every checkpoint and read back on resume."""
    iteration: int = 0
    best_score: float = -1.0
    best_iteration: int = 0
    best_metrics: dict = field(default_factory=dict)
    epoch: int = 0
    epoch_samples: int = 0  # images of this epoch's permutation consumed by all ranks together
    validation_pending: bool = False  # a signal stopped the run before this iteration's validation
    saved_iteration: int = -1  # the iteration last.pth holds (not saved: it is the checkpoint's own)


class StopRun(Exception):
    """Ends the run early with an exit status and a message (a stop signal, non-finite steps or
    weights). Raised where the fault is seen; `Trainer.fit` closes up and exits with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Trainer:
    """Builds a run from a `TrainConfig` and trains it: `Trainer(cfg).fit()`.

    Extension points. Subclass and override one of these, then call
    `run(cfg, trainer=YourTrainer)`; everything else (resume, DDP, AMP,
    checkpoints, faults, logging) keeps working:

    - `build_model()` -> the network (default: --model from the registry);
    - `build_transforms(norm)` -> (train, val) joint transforms of (image, mask);
    - `build_loss(class_weights)` -> a module called as
      `loss(outputs, targets, pixel_weights)` (outputs: the model's dict) that
      returns a scalar; class_weights is None or a tensor with one per class;
    - `param_groups(model)` -> the optimiser's parameter groups (dicts whose
      "lr" the poly schedule scales);
    - `build_optimizer(groups)` -> a torch optimiser;
    - `after_step(loss)` -> called after every optimiser step with the step's
      loss (a device tensor: reading it with .item() costs a GPU sync);
      `self.state.iteration` is the step's number;
    - `extra_state()` / `load_extra_state(state)` -> what a subclass keeps
      across a resume (an EMA of the weights, say): a dict of tensors and
      plain values, saved in every checkpoint under "extra".

    The loop itself (`fit`) is: validate if a signal interrupted the last one,
    then `train_step` per batch, logging, fault checks, and `validate_and_save`
    every --val-every iterations.
    """

    def __init__(self, cfg: TrainConfig, default_name: str = "run") -> None:
        cfg.validate()
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        runtime.init_distributed(self.device.type)
        self.is_main = runtime.is_main()
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else config.runs_dir() / default_name
        self._prepare_run_dir()
        seed_everything(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.train_set = datasets.build_dataset(cfg.dataset, cfg.train_split, cfg.data_root, None,
                                                **cfg.dataset_kwargs)
        self.val_set = datasets.build_dataset(cfg.dataset, cfg.val_split, cfg.data_root, None, **cfg.dataset_kwargs)
        self.num_classes = self.train_set.num_classes
        self.model_kwargs = dict(cfg.model_kwargs)
        if cfg.backbone is not None:
            self.model_kwargs["backbone"] = cfg.backbone
        model = self.build_model()
        self.input_norm = input_norm_of(model)  # the transforms normalise as the backbone expects
        self._check_batch_size(model)
        self.train_set.transforms, self.val_set.transforms = self.build_transforms(self.input_norm)
        self._build_loaders()
        if cfg.init_from:
            self._init_from(model, cfg.init_from)
        self._place_model(model)

        class_weights = compute_class_weights(cfg.class_weights, cfg.dataset, self.train_set, cfg.dataset_kwargs)
        if class_weights is not None and self.is_main:
            print(format_weights(cfg.class_weights, class_weights, self.train_set.classes))
        self.criterion = self.build_loss(class_weights).to(self.device)
        try:
            self.optimizer = self.build_optimizer(self.param_groups(model))
        except ValueError as err:
            raise SystemExit(f"{cfg.model}: {err}") from None
        if self.is_main:
            slots = 2 if cfg.optimizer == "adamw" else int(cfg.momentum != 0)
            check_free_space(self.run_dir, checkpoint_bytes(model, slots))
        self.scheduler = poly_lr(self.optimizer, cfg.iters, cfg.poly_power, cfg.warmup_iters)
        self.autocast_dtype = self._autocast_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.guard = NonFiniteGuard(self.optimizer, cfg.max_nonfinite_steps, self.device)
        self.signals = StopSignals()
        self.global_batch = cfg.batch_size * runtime.world_size()
        self.state = RunState()
        self.provenance = provenance() if self.is_main else {}
        self.resumed_position: dict | None = None  # where the data order stood in the checkpoint
        if cfg.resume:
            self._resume()
        self.logger = TensorBoardLogger(self.run_dir, enabled=self.is_main)
        self._bar = None
        self._reset_log_window()
        if self.is_main:
            write_run_config(self.run_dir, dataclasses.asdict(cfg), self.provenance, self.state.iteration)
            self.logger.config({**dataclasses.asdict(cfg), **self.provenance}, self.state.iteration)

    # ------------------------------------------------------------ extension points

    def build_model(self) -> nn.Module:
        """The network: any module mapping images [N, 3, H, W] to {'out': logits[N, C, H, W]} (plus
        'aux' in training where it has one). A model from elsewhere is saved under --model's name,
        so eval.py can only rebuild models of the registry."""
        return models.build_model(self.cfg.model, self.num_classes, pretrained=self.cfg.pretrained,
                                  **self.model_kwargs)

    def build_transforms(self, norm: InputNorm) -> tuple[Callable, Callable]:
        """(train, val) joint transforms; `norm` is the model's input normalisation."""
        cfg = self.cfg
        train = train_transforms(cfg.crop_size, (cfg.scale_min, cfg.scale_max), cfg.hflip, cfg.base_size or None,
                                 norm, elastic_std=cfg.elastic_std, elastic_grid=cfg.elastic_grid,
                                 rotate=cfg.rotate, blur=cfg.blur)
        return train, eval_transforms(cfg.val_base_size or None, norm)

    def build_loss(self, class_weights: torch.Tensor | None) -> nn.Module:
        """Cross-entropy (ignoring 255) with the class weights, pixel weights and auxiliary term."""
        return SegmentationLoss(self.train_set.ignore_index, self.cfg.aux_weight, class_weights)

    def param_groups(self, model: nn.Module) -> list[dict]:
        return param_groups(model, self.cfg.lr, self.cfg.head_lr_mult)

    def build_optimizer(self, groups: list[dict]) -> torch.optim.Optimizer:
        cfg = self.cfg
        return build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.momentum, cfg.weight_decay, self.device)

    def after_step(self, loss: torch.Tensor) -> None:
        """Called after every optimiser step; the default does nothing."""

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------ setup

    def _prepare_run_dir(self) -> None:
        if not self.is_main:
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
        remove_stale_temporaries(run_dir)

    def _check_batch_size(self, model: nn.Module) -> None:
        """A model that normalises over the batch where it has one value per image (PSPNet with
        bin_batch_norm) says how many images it needs; fail now rather than at the first step."""
        needed = getattr(model, "min_batch_size", 1)
        synced = self.cfg.sync_bn and self.device.type == "cuda" and runtime.world_size() > 1
        per_norm = self.cfg.batch_size * (runtime.world_size() if synced else 1)
        if per_norm < needed:
            raise SystemExit(f"--batch-size {self.cfg.batch_size}: {self.cfg.model} with options {self.model_kwargs} "
                             f"normalises a 1x1 map over the batch (BatchNorm in its 1x1 pyramid bin) and needs at "
                             f"least {needed} images per batch in training; raise --batch-size, or build it "
                             f"without that BatchNorm (--model-kwargs '{{\"bin_batch_norm\": false}}')")

    def _build_loaders(self) -> None:
        cfg = self.cfg
        pin = self.device.type == "cuda"
        self.batches = ResumableBatchSampler(len(self.train_set), cfg.batch_size, cfg.seed,
                                             runtime.rank(), runtime.world_size())
        pixel_weights = None
        if cfg.pixel_weights == "unet-border":
            if not 0 <= cfg.border_class < self.num_classes:
                raise SystemExit(f"--border-class {cfg.border_class} is not a class of {cfg.dataset} "
                                 f"(0..{self.num_classes - 1}: {', '.join(self.train_set.classes)})")
            pixel_weights = UNetBorderWeights(cfg.border_class, cfg.border_w0, cfg.border_sigma,
                                              self.train_set.ignore_index)
        self.train_loader = train_loader(self.train_set, self.batches, cfg.workers, pin, cfg.skip_bad_samples,
                                         pixel_weights=pixel_weights)
        self.val_loader = eval_loader(self.val_set, cfg.val_batch_size, cfg.workers, pin,
                                      runtime.rank(), runtime.world_size(), cfg.skip_bad_samples)

    def _place_model(self, model: nn.Module) -> None:
        """SyncBatchNorm, device, memory format, DDP and torch.compile, in that order."""
        cfg = self.cfg
        if runtime.world_size() > 1 and cfg.sync_bn:
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            elif self.is_main:
                print("note: SyncBatchNorm needs CUDA; on the CPU each process normalises over its own batch")
        if runtime.rank() > 0:
            # DDP copies rank 0's weights to every rank; from here on each rank draws its
            # own random numbers (dropout) instead of repeating rank 0's.
            seed_everything(cfg.seed + runtime.rank())
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        if runtime.world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.train_model = torch.compile(self.model) if cfg.compile else self.model

    def _autocast_dtype(self) -> torch.dtype | None:
        if not self.cfg.amp:
            return None
        if self.device.type == "cpu" and self.is_main and not runtime.cpu_has_native_bf16():
            # Measured in benchmarks/README.md: emulated bf16 ran about 40 times slower than fp32.
            print("note: this CPU has no native bf16 (AVX512-BF16 or AMX), so --amp emulates it "
                  "and is much slower than fp32; leave --amp off here")
        return autocast_dtype(self.device)

    def _init_from(self, model: nn.Module, path: str) -> None:
        # Partial loading is the point (FCN-16s from FCN-32s, fine-tuning on another class
        # count), so only a checkpoint that gives nothing is an error; what was left out is said.
        state = load_checkpoint(path)
        source = state["state_dict"]
        own = model.state_dict()
        matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
        other = (f"{state.get('model')!r} with {state.get('num_classes')} classes and options "
                 f"{state.get('model_kwargs')}")
        if not any(v.is_floating_point() for v in matched.values()):  # counters alone are no match
            raise CheckpointError(f"--init-from {path}: no tensor of its model {other} matches model "
                                  f"{self.cfg.model!r} with {self.num_classes} classes and options {self.model_kwargs}")
        model.load_state_dict(matched, strict=False)
        if self.is_main:
            note = f"initialised {len(matched)}/{len(own)} tensors from {path} ({other})"
            reshaped = [k for k, v in source.items() if k in own and own[k].shape != v.shape]
            if reshaped:
                note += f"; {len(reshaped)} differ in shape and start fresh, e.g. {reshaped[0]}"
                if state.get("num_classes") != self.num_classes:
                    note += f" (the checkpoint has {state.get('num_classes')} classes, this run {self.num_classes})"
            print(note)

    # ------------------------------------------------------------ checkpoints

    def checkpoint_state(self, metrics: dict) -> dict:
        cfg, s = self.cfg, self.state
        return {
            "model": cfg.model,
            "model_kwargs": self.model_kwargs,
            "num_classes": self.num_classes,
            "input_norm": self.input_norm.to_dict(),  # how eval.py / predict.py must normalise images
            "dataset": cfg.dataset,
            "dataset_kwargs": dict(cfg.dataset_kwargs),
            "classes": list(self.val_set.classes),
            "palette": [list(c) for c in self.val_set.palette],
            "state_dict": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": s.iteration,
            "metrics": metrics,
            "best_score": s.best_score,
            "best_iteration": s.best_iteration,
            "best_metrics": s.best_metrics,
            "world_size": runtime.world_size(),
            "data_position": {"epoch": s.epoch, "samples": s.epoch_samples},
            # True when a signal stopped the run before this iteration's scheduled validation
            "validation_pending": not metrics and self._validation_due(),
            "nonfinite_run": self.guard.state(),
            "rng": rng_state(),
            "config": dataclasses.asdict(cfg),
            "provenance": self.provenance,
            "extra": self.extra_state(),
        }

    def _resume(self) -> None:
        # On the CPU: RNG states must stay there, and load_state_dict copies the rest to the device.
        path = self.run_dir / "last.pth"
        saved = load_checkpoint(path, map_location="cpu")
        if saved.get("model") != self.cfg.model:
            raise CheckpointError(f"--resume: {path} holds model {saved.get('model')!r}, but this run trains "
                                  f"{self.cfg.model!r}")
        if saved.get("num_classes") != self.num_classes:
            raise CheckpointError(f"--resume: {path} has {saved.get('num_classes')} classes, but data set "
                                  f"{self.cfg.dataset!r} has {self.num_classes}")
        try:
            unwrap(self.model).load_state_dict(saved["state_dict"])
            self.optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError) as err:
            raise CheckpointError(f"--resume: {path} does not fit this run's {self.cfg.model!r} (options "
                                  f"{self.model_kwargs}; the checkpoint's: {saved.get('model_kwargs')}): "
                                  f"{str(err).splitlines()[0]}") from None
        self.scheduler.load_state_dict(saved["scheduler"])
        self.scaler.load_state_dict(saved["scaler"])
        self.guard.load_state(saved.get("nonfinite_run", 0))
        self.load_extra_state(saved.get("extra", {}))
        self.state = RunState(iteration=saved["iteration"], best_score=saved["best_score"],
                              best_iteration=saved["best_iteration"], best_metrics=saved["best_metrics"],
                              validation_pending=saved.get("validation_pending", False),
                              saved_iteration=saved["iteration"])
        self.resumed_position = saved.get("data_position")
        if runtime.is_main():
            set_rng_state(saved["rng"])  # rank 0's; the checkpoint holds no other
        else:
            seed_everything(self.cfg.seed + runtime.rank() + 1_000_003 * self.state.iteration)
        saved_world, saved_batch = saved.get("world_size", 1), saved["config"]["batch_size"]
        if self.is_main and (saved_world, saved_batch) != (runtime.world_size(), self.cfg.batch_size):
            print(f"note: the checkpoint was written by {saved_world} process(es) at batch size {saved_batch} "
                  f"per process; continuing with {runtime.world_size()} x {self.cfg.batch_size} (iteration, "
                  f"LR schedule and epoch position carry over)")
        if self.is_main:
            print(f"resumed from {path} at iteration {self.state.iteration}")

    def _data_position(self) -> tuple[int, int]:
        """(epoch, first batch) at which the data order continues.

        A checkpoint records its epoch and how many images of that epoch's
        permutation all ranks had consumed together (ranks take interleaved
        shards, so these are exactly the permutation's first images). The
        run continues in that epoch after the largest whole number of its own
        global batches (batch size x processes) that fits: with the same world
        size and batch size this is exact; otherwise at most one global batch
        is seen twice and no image is skipped.
        """
        if self.resumed_position is None:
            return divmod(self.state.iteration, len(self.batches))
        samples = self.resumed_position["samples"]
        return self.resumed_position["epoch"], min(samples // self.global_batch, len(self.batches))

    # ------------------------------------------------------------ the loop

    def fit(self) -> dict:
        """Train to --iters and return the best validation metrics. A stop (signal, non-finite
        steps) closes the logs and progress display and exits with its status."""
        with self.signals:  # SIGINT / SIGTERM: stop cleanly after the current step
            try:
                return self._train()
            except StopRun as stop:
                if self.is_main:
                    print(stop, file=sys.stderr, flush=True)
                self._close()
                raise SystemExit(stop.code) from None

    def _train(self) -> dict:
        cfg, s = self.cfg, self.state
        self.train_model.train()
        self.batches.set_position(*self._data_position())
        s.epoch, s.epoch_samples = self.batches.epoch, self.batches.start * self.global_batch
        if self.is_main:
            print(f"training {cfg.model} on {cfg.dataset} ({len(self.train_set)} train / {len(self.val_set)} "
                  f"{cfg.val_split} images) on {self.device} x{runtime.world_size()} (batch {cfg.batch_size} per "
                  f"process, {self.global_batch} per step), run folder {self.run_dir}", flush=True)
        self._bar = progress_bar(cfg.iters, "train", show=self.is_main, bars=cfg.progress, initial=s.iteration)
        self._reset_log_window()
        if s.validation_pending:
            self.validate_and_save()
        while s.iteration < cfg.iters:
            for batch in self.train_loader:
                loss = self.train_step(batch)
                self.after_step(loss)
                self._bar.update(1)
                self._running_loss += loss
                if s.iteration % cfg.log_every == 0 or s.iteration == cfg.iters:
                    self._log()
                validating = self._validation_due()
                self._check_faults(sync=validating or s.iteration % cfg.log_every == 0)
                if validating:
                    self.validate_and_save()
                if s.iteration >= cfg.iters:
                    break
            self.batches.set_position(self.batches.epoch + 1, 0)
            s.epoch, s.epoch_samples = self.batches.epoch, 0
        self._finish()
        return s.best_metrics

    def train_step(self, batch: tuple) -> torch.Tensor:
        """One optimiser step on a batch from the train loader: (images, masks[, pixel weights]).
        Returns the loss as a detached device tensor, without a host sync."""
        cfg, device = self.cfg, self.device
        images, targets, *pixel_weights = batch  # pixel weights with --pixel-weights
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        weights = pixel_weights[0].to(device, non_blocking=True) if pixel_weights else None
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            loss = self.criterion(self.train_model(images), targets, weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.scaler.is_enabled():  # fp16: the loss scaler skips steps with inf/NaN gradients
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.guard.step(loss, self.state.iteration + 1)
        self.scheduler.step()
        self.state.iteration += 1
        self.state.epoch_samples += self.global_batch
        return loss.detach()

    def _validation_due(self) -> bool:
        it = self.state.iteration
        return it % self.cfg.val_every == 0 or it == self.cfg.iters

    def _reset_log_window(self) -> None:
        """Start a log interval: its losses are summed on the device, its time excludes validation."""
        self._running_loss = torch.zeros((), device=self.device)
        self._window_start, self._window_first = time.perf_counter(), self.state.iteration

    def _log(self) -> None:
        """The mean loss since the last log line (the one host sync per interval), the LR,
        throughput and, on CUDA, peak memory."""
        it = self.state.iteration
        runtime.all_reduce_mean(self._running_loss)  # every rank logs the same figure
        mean_loss = (self._running_loss / (it - self._window_first)).item()
        seconds = time.perf_counter() - self._window_start
        values = {"train/loss": mean_loss, "train/lr": self.optimizer.param_groups[0]["lr"],
                  "train/images_per_s": (it - self._window_first) * self.global_batch / max(seconds, 1e-9)}
        if self.device.type == "cuda":
            values["train/peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
        self._bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{values['train/lr']:.2e}")
        self.logger.scalars(values, it)
        skipped = self.guard.take_skipped()
        if skipped and self.is_main:
            self._bar.write(f"[{it}/{self.cfg.iters}] skipped {skipped} step(s) with a non-finite loss or "
                            f"gradient since the last log line", file=sys.stderr)
        self._reset_log_window()

    def validate_and_save(self) -> dict:
        cfg, s = self.cfg, self.state
        rows: list = []

        def keep_rows(index, images, targets, predictions, logits):
            for i in range(images.shape[0]):
                if len(rows) < cfg.val_images:
                    rows.append((images[i], targets[i], predictions[i]))

        started = time.perf_counter()
        metrics = evaluate(unwrap(self.model), self.val_loader, self.num_classes, self.device, cfg.inference(),
                           self.val_set.ignore_index, on_batch=keep_rows if self.is_main else None,
                           progress=self.is_main, progress_bars=cfg.progress, channels_last=cfg.channels_last,
                           autocast_dtype=self.autocast_dtype)
        if self.is_main:
            it = s.iteration
            binary = BINARY_KEYS * ("roc_auc" in metrics)  # two-class data sets: figures of class 1
            keys = ("acc", "acc_cls", "mean_iu", "fwavacc") + binary
            self.logger.scalars({f"val/{k}": metrics[k] for k in keys}, it)
            self.logger.class_iou(metrics["iou"], self.val_set.classes, it)
            self.logger.prediction_grid(rows, self.val_set.palette, self.input_norm, it)
            self._bar.write(f"[{it}/{cfg.iters}] val mean_iu {metrics['mean_iu']:.4f} acc {metrics['acc']:.4f} "
                            f"acc_cls {metrics['acc_cls']:.4f} fwavacc {metrics['fwavacc']:.4f} "
                            f"({time.perf_counter() - started:.0f} s)")
            if binary:
                self._bar.write(f"[{it}/{cfg.iters}] val {format_binary(metrics)}")
        improved = metrics["mean_iu"] > s.best_score
        if improved:
            s.best_score, s.best_iteration, s.best_metrics = metrics["mean_iu"], s.iteration, metrics
        self._save(metrics, best=improved)
        self._window_start += time.perf_counter() - started  # validation is not training throughput
        return metrics

    def _save(self, metrics: dict, best: bool) -> None:
        """Write last.pth (and best.pth), on the main process only.

        best.pth goes first: a crash between the two writes then leaves last.pth at
        the previous save, and the resumed run redoes this iteration and rewrites
        best.pth, instead of last.pth claiming a best.pth that was never written.
        Weights that went bad are never saved over good ones.
        """
        self._stop_if_tripped(runtime.max_over_ranks([self.guard.tripped_at], self.device)[0])
        if not finite_weights(unwrap(self.model)):
            raise StopRun(1, f"stopping at iteration {self.state.iteration}: the weights are no longer finite; "
                             f"{self.run_dir / 'last.pth'} (iteration {self.state.saved_iteration}) is kept as it was")
        if self.is_main:
            state = self.checkpoint_state(metrics)
            if best:
                save_checkpoint(state, self.run_dir / "best.pth")
            save_checkpoint(state, self.run_dir / "last.pth")
        self.state.saved_iteration = self.state.iteration
        runtime.barrier()

    def _check_faults(self, sync: bool) -> None:
        """Stop on a signal (after writing last.pth) or after too many non-finite steps in a row.

        Alone, the signal flag is a Python int and is read every step; the non-finite
        counters are read every step where that is free (see NonFiniteGuard) and else
        at sync points. Under torchrun both are agreed on by all ranks at sync points
        only (log intervals and validations, where the loss is synchronised anyway),
        so that every rank stops at the same iteration.
        """
        if runtime.world_size() > 1:
            if not sync:
                return
            signum, tripped = runtime.max_over_ranks([self.signals.received, self.guard.tripped_at], self.device)
        else:
            signum = self.signals.received
            tripped = int(self.guard.tripped_at) if sync or not self.guard.deferred else -1
        self._stop_if_tripped(tripped)
        if signum:
            if self.state.saved_iteration != self.state.iteration:
                self._save({}, best=False)
            raise StopRun(128 + signum, f"stopped by {signal.Signals(signum).name} at iteration "
                                        f"{self.state.iteration}/{self.cfg.iters}; {self.run_dir / 'last.pth'} "
                                        f"holds it: continue with --resume")

    def _stop_if_tripped(self, tripped: int) -> None:
        if tripped >= 0:
            limit = self.cfg.max_nonfinite_steps
            raise StopRun(1, f"stopping at iteration {self.state.iteration}: {limit} consecutive steps had a "
                             f"non-finite loss or gradient, iterations {tripped - limit + 1}..{tripped}; they were "
                             f"skipped, and {self.run_dir / 'last.pth'} (iteration {self.state.saved_iteration}) "
                             f"is kept as it was. Lower --lr, raise --warmup-iters or check the data, then --resume")

    def _finish(self) -> None:
        s = self.state
        if self.is_main:
            summary = s.best_metrics
            self.logger.hparams(dataclasses.asdict(self.cfg),
                                {k: summary[k] for k in ("mean_iu", "acc", "acc_cls", "fwavacc") if k in summary})
        self._close()
        if self.is_main:
            m = s.best_metrics
            print(f"best mean_iu {s.best_score:.4f} at iteration {s.best_iteration} "
                  f"(acc {m.get('acc', float('nan')):.4f}, acc_cls {m.get('acc_cls', float('nan')):.4f}, "
                  f"fwavacc {m.get('fwavacc', float('nan')):.4f}) -> {self.run_dir / 'best.pth'}", flush=True)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self.logger.close()
        runtime.cleanup()
