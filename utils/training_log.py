"""What a run reports as it trains: the progress bar, the training loss, LR and throughput at
each log interval, the validation figures and pictures, and the closing summary. A callback
(utils/callbacks.py) that every Trainer runs first."""
from __future__ import annotations

import dataclasses
import sys
import time

import torch

from . import runtime
from .binary_metrics import BINARY_KEYS, format_binary
from .callbacks import Callback
from .val_samples import validation_pictures
from .visualize import progress_bar


class TrainingLog(Callback):
    """Prints to the terminal (rank 0) and writes TensorBoard scalars and images through
    `trainer.logger`. The training loss is summed on the device every step and read once per
    --log-every interval (the one host sync there); an interval's time leaves out validation."""

    name = "log"

    def __init__(self) -> None:
        self.bar = None
        self.running_loss: torch.Tensor | None = None
        self.window_start, self.window_first = time.perf_counter(), 0

    def on_train_start(self, trainer) -> None:
        cfg, s = trainer.cfg, trainer.state
        if trainer.is_main:
            print(f"training {cfg.model} on {cfg.dataset} ({len(trainer.train_set)} train / "
                  f"{len(trainer.val_set)} {cfg.val_split} images) on {trainer.device} x{runtime.world_size()} "
                  f"(batch {cfg.batch_size} per process, {trainer.global_batch} per step), run folder "
                  f"{trainer.run_dir}", flush=True)
        self.bar = progress_bar(cfg.iters, "train", show=trainer.is_main, bars=cfg.progress, initial=s.iteration)
        self._reset_window(trainer)

    def _reset_window(self, trainer) -> None:
        self.running_loss = torch.zeros((), device=trainer.device)
        self.window_start, self.window_first = time.perf_counter(), trainer.state.iteration

    def write(self, text: str, file=None) -> None:
        if self.bar is not None:
            self.bar.write(text, file=file)
        else:
            print(text, file=file, flush=True)

    def on_step_end(self, trainer, loss: torch.Tensor) -> None:
        if self.running_loss is None:  # stepped without fit(), as the benchmarks do
            self._reset_window(trainer)
        if self.bar is not None:
            self.bar.update(1)
        self.running_loss += loss
        if trainer.log_due():
            self._log(trainer)

    def _log(self, trainer) -> None:
        """The mean loss since the last log line, the LR, throughput and, on CUDA, peak memory."""
        it = trainer.state.iteration
        runtime.all_reduce_mean(self.running_loss)  # every rank logs the same figure
        mean_loss = (self.running_loss / (it - self.window_first)).item()
        seconds = time.perf_counter() - self.window_start
        values = {"train/loss": mean_loss, "train/lr": trainer.optimizer.param_groups[0]["lr"],
                  "train/images_per_s": (it - self.window_first) * trainer.global_batch / max(seconds, 1e-9)}
        if trainer.device.type == "cuda":
            values["train/peak_memory_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2 ** 30
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{values['train/lr']:.2e}")
        trainer.logger.scalars(values, it)
        skipped = trainer.guard.take_skipped()
        if skipped and trainer.is_main:
            self.write(f"[{it}/{trainer.cfg.iters}] skipped {skipped} step(s) with a non-finite loss or "
                       f"gradient since the last log line", file=sys.stderr)
        self._reset_window(trainer)

    def on_validation_end(self, trainer, metrics: dict) -> None:
        it, cfg = trainer.state.iteration, trainer.cfg
        if trainer.is_main:
            binary = BINARY_KEYS * ("roc_auc" in metrics)  # two-class data sets: figures of class 1
            keys = ("acc", "acc_cls", "mean_iu", "fwavacc") + binary
            trainer.logger.scalars({f"val/{k}": metrics[k] for k in keys}, it)
            trainer.logger.class_iou(metrics["iou"], trainer.val_set.classes, it)
            started = time.perf_counter()
            trainer.logger.samples(validation_pictures(trainer), it)  # the same evenly spaced images every time
            trainer.logger.confusion(metrics["confusion"], trainer.val_set.classes, it)
            trainer.validation_seconds += time.perf_counter() - started  # not training throughput either
            self.write(f"[{it}/{cfg.iters}] val mean_iu {metrics['mean_iu']:.4f} acc {metrics['acc']:.4f} "
                       f"acc_cls {metrics['acc_cls']:.4f} fwavacc {metrics['fwavacc']:.4f} "
                       f"({trainer.validation_seconds:.0f} s)")
            if binary:
                self.write(f"[{it}/{cfg.iters}] val {format_binary(metrics)}")
        self.window_start += trainer.validation_seconds  # validation is not training throughput

    def on_train_end(self, trainer) -> None:
        s = trainer.state
        finished = trainer.stopped is None
        if finished and trainer.is_main:
            summary = s.best_metrics
            trainer.logger.hparams(dataclasses.asdict(trainer.cfg),
                                   {k: summary[k] for k in ("mean_iu", "acc", "acc_cls", "fwavacc") if k in summary})
        if self.bar is not None:
            self.bar.close()
        if finished and trainer.is_main:
            m = s.best_metrics
            print(f"best mean_iu {s.best_score:.4f} at iteration {s.best_iteration} "
                  f"(acc {m.get('acc', float('nan')):.4f}, acc_cls {m.get('acc_cls', float('nan')):.4f}, "
                  f"fwavacc {m.get('fwavacc', float('nan')):.4f}) -> {trainer.run_dir / 'best.pth'}", flush=True)
