"""The training loop: `Trainer(cfg).fit()` builds a run from a `TrainConfig` and trains it.

utils/engine.py's `run(cfg)` is how a script calls it; a script that changes what the
engine builds subclasses `Trainer` (docs/extending.md).
"""
from __future__ import annotations

import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

import config
import datasets
import models
from models.input_norm import InputNorm, input_norm_of
from models.weight_download import downloads_allowed

from . import runtime
from .callbacks import Callback, CallbackList, build_callbacks
from .checkpoint import CheckpointWriteError, make_checkpoint, provenance, save_checkpoint, unwrap, write_run_config
from .class_weights import compute_class_weights, format_weights
from .data import ResumableBatchSampler, eval_loader, train_loader
from .faults import (EXIT_WRITE_FAILED, NonFiniteGuard, StopSignals, check_free_space, checkpoint_bytes,
                     checkpoint_write_failed, finite_weights)
from .inference import evaluate
from .losses import build_loss
from .optim import build_optimizer, param_groups, poly_lr
from .run_setup import check_batch_size, choose_autocast_dtype, init_from, place_model, prepare_run_dir
from .run_state import RunState, StopRun, data_position, resume
from .runtime import pick_device, rng_state, seed_everything
from .train_config import TrainConfig
from .training_log import TrainingLog
from .transforms import eval_transforms, train_transforms
from .visualize import TensorBoardLogger


class _BuildAfterInit(type):
    """Runs `setup()` once the whole `__init__` chain has returned, so that a subclass may set
    its own attributes after `super().__init__()` and its builders still see them."""

    def __call__(cls, *args, **kwargs):
        trainer = super().__call__(*args, **kwargs)
        if not trainer.__dict__.get("_built"):  # a subclass's __init__ may have needed a part already
            trainer.setup()
        return trainer


class Trainer(metaclass=_BuildAfterInit):
    """Builds a run from a `TrainConfig` and trains it: `Trainer(cfg).fit()`.

    `Trainer(cfg, callbacks=[...])` stores its arguments; when construction is done,
    `setup()` builds the run's parts by calling the builders below, so a subclass
    overrides any one of them (and sets whatever attributes it needs in its own
    `__init__`, before or after `super().__init__()`), then runs with
    `run(cfg, trainer=YourTrainer)`; resume, DDP, AMP, checkpoints, faults and logging
    keep working (docs/extending.md):

    - `build_model()` -> the network (default: --model from the registry);
    - `build_transforms(norm)` -> (train, val) joint transforms of (image, mask);
    - `build_loss()` -> a module called as `loss(outputs, targets, pixel_weights)`
      (outputs: the model's dict) that returns a scalar (default: --loss with
      --loss-kwargs from utils/losses.py); its attribute `pixel_weight_map`, if set,
      computes the per-pixel weights of each training mask in the data loader;
    - `param_groups(model)` -> the optimiser's parameter groups (dicts whose
      "lr" the poly schedule scales);
    - `build_optimizer(groups)` -> a torch optimiser;
    - `build_callbacks()` -> the callbacks (utils/callbacks.py): the training log,
      then those named by --callbacks, then those passed in;
    - `after_step(loss)` -> called after every optimiser step (a callback's
      `on_step_end` does the same without subclassing);
    - `extra_state()` / `load_extra_state(state)` -> what a subclass keeps
      across a resume: a dict of tensors and plain values, saved under "extra".

    The loop itself (`fit`) is: validate if a signal interrupted the last one,
    then per batch `train_step`, the callbacks' `on_step_end`, fault checks, and
    `validate_and_save` every --val-every iterations.
    """

    def __init__(self, cfg: TrainConfig, default_name: str = "run", callbacks: Sequence[Callback] = ()) -> None:
        cfg.validate()
        self.cfg = cfg
        self.default_name = default_name
        self.extra_callbacks = list(callbacks)
        for callback in self.extra_callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"a callback must be a utils.callbacks.Callback, got {type(callback).__name__}")

    def __getattr__(self, name: str):
        # Only for attributes not found: a part asked for before setup() ran, by a subclass's
        # __init__ written for the time when parts were built inside Trainer.__init__, builds
        # them now (its own attributes set after that point are not seen by its builders).
        state = self.__dict__
        if name.startswith("__") or "cfg" not in state or state.get("_building") or state.get("_built"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self.setup()
        return getattr(self, name)

    def setup(self) -> None:
        """Build every part of the run, in order (called once, right after construction)."""
        self._building = True
        try:
            self._build()
        finally:
            self._building = False
        self._built = True

    def _build(self) -> None:
        cfg = self.cfg
        self.device = pick_device(cfg.device)
        runtime.init_distributed(self.device.type)
        self.is_main = runtime.is_main()
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else config.runs_dir() / self.default_name
        self.lock, self.resuming = prepare_run_dir(self.run_dir, cfg, self.device)  # rank 0 decides
        seed_everything(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.train_set = datasets.build_dataset(cfg.dataset, cfg.train_split, cfg.data_root, None,
                                                **cfg.dataset_kwargs)
        self.val_set = datasets.build_dataset(cfg.dataset, cfg.val_split, cfg.data_root, None, **cfg.dataset_kwargs)
        self.num_classes = self.train_set.num_classes
        try:
            cfg.inference().check_classes(self.num_classes, flag_prefix="--val-")
        except ValueError as err:
            raise SystemExit(f"{cfg.dataset}: {err}") from None
        self.model_kwargs = dict(cfg.model_kwargs)
        if cfg.backbone is not None:
            self.model_kwargs["backbone"] = cfg.backbone
        with downloads_allowed(cfg.download):  # --no-download: a missing ImageNet file stays an error
            model = self.build_model()
        self.input_norm = input_norm_of(model)  # the transforms normalise as the backbone expects
        check_batch_size(model, cfg, self.device, self.model_kwargs)
        self.train_set.transforms, self.val_set.transforms = self.build_transforms(self.input_norm)
        self.criterion = self.build_loss().to(self.device)
        self._build_loaders(getattr(self.criterion, "pixel_weight_map", None))
        if cfg.init_from:
            init_from(model, cfg.init_from, cfg.model, self.num_classes, self.model_kwargs)
        _, self.model, self.train_model = place_model(model, cfg, self.device)
        try:
            self.optimizer = self.build_optimizer(self.param_groups(model))
        except ValueError as err:
            raise SystemExit(f"{cfg.model}: {err}") from None
        if self.is_main:
            slots = 2 if cfg.optimizer == "adamw" else int(cfg.momentum != 0)
            check_free_space(self.run_dir, checkpoint_bytes(model, slots))
        self.scheduler = poly_lr(self.optimizer, cfg.iters, cfg.poly_power, cfg.warmup_iters)
        self.autocast_dtype = choose_autocast_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.guard = NonFiniteGuard(self.optimizer, cfg.max_nonfinite_steps, self.device)
        self.signals = StopSignals()
        self.global_batch = cfg.batch_size * runtime.world_size()
        self.callbacks = CallbackList(self.build_callbacks())
        self.state = RunState()
        self.stopped: StopRun | None = None
        self.validation_seconds = 0.0
        self.provenance = provenance() if self.is_main else {}
        self.resumed_position: dict | None = None  # where the data order stood in the checkpoint
        if self.resuming:
            resume(self, self.run_dir / "last.pth")
        self.logger = TensorBoardLogger(self.run_dir, enabled=self.is_main)
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
                                 rotate=cfg.rotate, blur=cfg.blur, vflip=cfg.vflip, brightness=cfg.brightness,
                                 contrast=cfg.contrast, gamma=cfg.gamma, precrop=cfg.precrop)
        return train, eval_transforms(cfg.val_base_size or None, norm)

    def build_loss(self) -> nn.Module:
        """--loss with its options (--loss-kwargs and the --class-weights / --pixel-weights shorthands)."""
        cfg = self.cfg

        def class_weights_from_data(method: str) -> torch.Tensor:
            weights = compute_class_weights(method, cfg.dataset, self.train_set, cfg.dataset_kwargs)
            if self.is_main:
                print(format_weights(method, weights, self.train_set.classes))
            return weights

        try:
            return build_loss(cfg.loss, cfg.loss_options(), ignore_index=self.train_set.ignore_index,
                              aux_weight=cfg.aux_weight, num_classes=self.num_classes,
                              class_weights_from_data=class_weights_from_data)
        except ValueError as err:
            raise SystemExit(f"{err} ({cfg.dataset}: {', '.join(self.train_set.classes)})") from None

    def param_groups(self, model: nn.Module) -> list[dict]:
        return param_groups(model, self.cfg.lr, self.cfg.head_lr_mult)

    def build_optimizer(self, groups: list[dict]) -> torch.optim.Optimizer:
        cfg = self.cfg
        return build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.momentum, cfg.weight_decay, self.device)

    def build_callbacks(self) -> list[Callback]:
        """The training log first, then the callbacks --callbacks names, then those passed in."""
        return [TrainingLog(), *build_callbacks(self.cfg.callbacks, self.cfg.callback_kwargs), *self.extra_callbacks]

    def after_step(self, loss: torch.Tensor) -> None:
        """Called after every optimiser step; the default does nothing."""

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # ------------------------------------------------------------ setup

    def _build_loaders(self, pixel_weight_map) -> None:
        cfg = self.cfg
        pin = self.device.type == "cuda"
        self.batches = ResumableBatchSampler(len(self.train_set), cfg.batch_size, cfg.seed,
                                             runtime.rank(), runtime.world_size())
        self.train_loader = train_loader(self.train_set, self.batches, cfg.workers, pin, cfg.skip_bad_samples,
                                         pixel_weights=pixel_weight_map)
        self.val_loader = eval_loader(self.val_set, cfg.val_batch_size, cfg.workers, pin,
                                      runtime.rank(), runtime.world_size(), cfg.skip_bad_samples)

    # ------------------------------------------------------------ checkpoints

    def checkpoint_state(self, metrics: dict) -> dict:
        cfg, s = self.cfg, self.state
        training = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(), "world_size": runtime.world_size(),
                    # True when a signal stopped the run before this iteration's scheduled validation
                    **s.checkpoint_fields(validation_pending=not metrics and self._validation_due()),
                    "nonfinite_run": self.guard.state(), "rng": rng_state(), "extra": self.extra_state(),
                    "callbacks": self.callbacks.state_dict()}
        return make_checkpoint(
            model=cfg.model, model_kwargs=self.model_kwargs, num_classes=self.num_classes,
            input_norm=self.input_norm.to_dict(),  # how eval.py / predict.py must normalise images
            dataset=cfg.dataset, dataset_kwargs=cfg.dataset_kwargs, classes=self.val_set.classes,
            palette=self.val_set.palette, state_dict=unwrap(self.model).state_dict(),
            config=dataclasses.asdict(cfg), iteration=s.iteration, metrics=metrics, provenance=self.provenance,
            training=training)

    def _data_position(self) -> tuple[int, int]:
        return data_position(self.state.iteration, self.resumed_position, self.global_batch, len(self.batches))

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
                self.stopped = stop
                self._close()
                raise SystemExit(stop.code) from None

    def _train(self) -> dict:
        cfg, s = self.cfg, self.state
        self.train_model.train()
        self.batches.set_position(*self._data_position())
        s.epoch, s.epoch_samples = self.batches.epoch, self.batches.start * self.global_batch
        self.callbacks.on_train_start(self)
        if s.validation_pending:
            self.validate_and_save()
        while s.iteration < cfg.iters:
            for batch in self.train_loader:
                loss = self.train_step(batch)
                self.after_step(loss)
                self.callbacks.on_step_end(self, loss)
                validating = self._validation_due()
                self._check_faults(sync=validating or self.log_due())
                if validating:
                    self.validate_and_save()
                if s.iteration >= cfg.iters:
                    break
            self.batches.set_position(self.batches.epoch + 1, 0)
            s.epoch, s.epoch_samples = self.batches.epoch, 0
        self._close()
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

    def log_due(self) -> bool:
        """Whether this iteration writes the training log line (and callbacks their interval's figures)."""
        it = self.state.iteration
        return it % self.cfg.log_every == 0 or it == self.cfg.iters

    def validate_and_save(self) -> dict:
        """Validate, tell the callbacks, keep the best score, and write last.pth (and best.pth)."""
        cfg, s = self.cfg, self.state
        started = time.perf_counter()
        metrics = evaluate(unwrap(self.model), self.val_loader, self.num_classes, self.device, cfg.inference(),
                           self.val_set.ignore_index, progress=self.is_main, progress_bars=cfg.progress, channels_last=cfg.channels_last,
                           autocast_dtype=self.autocast_dtype)
        self.validation_seconds = time.perf_counter() - started
        improved = metrics["mean_iu"] > s.best_score
        if improved:
            s.best_score, s.best_iteration, s.best_metrics = metrics["mean_iu"], s.iteration, metrics
        self.callbacks.on_validation_end(self, metrics)
        self._save(metrics, best=improved)
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
        failed = None
        if self.is_main:
            state = self.checkpoint_state(metrics)
            try:
                self.callbacks.on_save(self, state)  # it may write files too (the snapshots callback)
                if best:
                    save_checkpoint(state, self.run_dir / "best.pth")
                save_checkpoint(state, self.run_dir / "last.pth")
            except CheckpointWriteError as err:  # a full disk: the files already there are whole
                failed = err
        if runtime.max_over_ranks([failed is not None], self.device)[0]:  # every rank learns it; also the barrier
            raise StopRun(EXIT_WRITE_FAILED, checkpoint_write_failed(failed, self.run_dir, self.state.iteration,
                                                                     self.state.saved_iteration))
        self.state.saved_iteration = self.state.iteration

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

    def _close(self) -> None:
        """The end of the run, finished or stopped: callbacks first (the training log prints the
        last line), then the TensorBoard files and the process group."""
        self.callbacks.on_train_end(self)
        self.logger.close()
        if self.lock is not None:
            self.lock.release()
        runtime.cleanup()
