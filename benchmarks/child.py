"""Shared by the benchmarks: one measurement per fresh child process, so that peak memory is its own
and no cache leaks between rows (train_speed.py, peers.py), and the engine's Trainer that every
benchmark's training step runs through (train_speed.py, peers.py, data_speed.py)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import nn

    from utils.engine import Trainer


def rss_mib() -> float:
    """This process's resident set now, in MiB (the baseline a child's peak is measured from)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mib() -> float:
    """This process's peak resident set so far, in MiB (VmHWM). Not getrusage's ru_maxrss: Linux
    carries that over fork and exec, so a child would report at least its parent's size."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def add_child_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a benchmark that measures in children: the time limit of one measurement, and
    the hidden --child SPEC_JSON by which the script runs as a child."""
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--child", help=argparse.SUPPRESS)


def answer_if_child(args: argparse.Namespace, measure: Callable[[dict], dict]) -> bool:
    """In a child (--child given): print `measure(spec)` as the JSON line run_child reads; True then."""
    if not args.child:
        return False
    print(json.dumps(measure(json.loads(args.child))))
    return True


def run_child(script: str, spec: dict, timeout: float) -> dict:
    """Run `script --child SPEC_JSON` and return the JSON object it prints last, or {'error': why}."""
    command = [sys.executable, script, "--child", json.dumps(spec)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"error": ((result.stderr.strip().splitlines() or ["no output"])[-1])[:120]}
    return json.loads(lines[-1])


def engine_trainer(model: nn.Module | None = None, *, model_name: str | None = None,
                   model_kwargs: dict | None = None, classes: int | None = None, crop: int, batch: int,
                   device: str, amp: bool = False, channels_last: bool = False, compile: bool = False,
                   run_dir: str, **cfg_fields) -> Trainer:
    """A `utils.engine.Trainer` whose `train_step((images, targets))` is the step to time: the engine's
    own (device copy, channels_last, autocast, its SegmentationLoss with the auxiliary term where the
    model returns one, backward through GradScaler or the NonFiniteGuard, SGD at lr 1e-4, momentum
    0.9, weight decay 1e-4 (fused on CUDA), the poly LR step, the iteration count).

    The network: `model` when given (a peer's; one returning a bare tensor, as smp's do, is wrapped
    to return {'out': tensor}), else `model_name` with `model_kwargs` from our registry, built by the
    engine (with `model` given, the config's model name is only a label: u_net unless `model_name`
    names another). `classes` is the network's class count (default: the data set's); the loss
    only needs targets below it. The data set is the generated `shapes` (tiny, nothing read from disk) unless
    `cfg_fields` say otherwise: they are any further TrainConfig fields (data_speed.py passes its
    data set, data root and workers). Writes its run files (config, TensorBoard events) to `run_dir`,
    a temporary folder of the caller's: close `trainer.logger` before removing it. The model is left
    in training mode; the poly schedule runs over 10**6 iterations, so the LR stays at 1e-4.
    """
    import torch
    from torch import nn

    import models
    from utils.engine import TrainConfig, Trainer

    class DictOutput(nn.Module):
        """A peer network as the engine expects it: {'out': logits} (dicts pass through)."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> dict:
            out = self.net(x)
            return out if isinstance(out, dict) else {"out": out}

    class BenchmarkTrainer(Trainer):
        def build_model(self) -> nn.Module:
            if model is not None:
                return DictOutput(model)
            return models.build_model(self.cfg.model, classes or self.num_classes, pretrained=False,
                                      **self.model_kwargs)

    fields = {"dataset": "shapes", "dataset_kwargs": {"size": 32, "length": 8}, "workers": 0,
              "optimizer": "sgd", "lr": 1e-4, "momentum": 0.9, "weight_decay": 1e-4, "iters": 10 ** 6,
              **cfg_fields}
    if model is None and model_name is None:
        raise ValueError("engine_trainer: give a module (model) or a registered model name (model_name)")
    cfg = TrainConfig(model=model_name or "u_net", model_kwargs=dict(model_kwargs or {}), batch_size=batch,
                      crop_size=crop, device=device, amp=amp, channels_last=channels_last, compile=compile,
                      progress=False, run_dir=str(run_dir), **fields)
    trainer = BenchmarkTrainer(cfg)
    trainer.train_model.train()
    return trainer
