"""The optimiser, its parameter groups and the poly learning-rate schedule (DeepLab, PSPNet):
lr = base * (1 - it / max_it) ** power, after an optional linear warm-up."""
from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS = ("sgd", "adamw")


def param_groups(model: nn.Module, lr: float, head_lr_mult: float = 1.0) -> list[dict]:
    """One group at `lr`; or, with `head_lr_mult` != 1, the backbone at `lr` and every other
    layer at `lr` x mult (the authors' PSPNet: ppm, cls and aux at 10x).

    Groups keep a fixed order, so the optimiser's state and the schedule resume;
    LambdaLR scales each group's own LR. A model without a `backbone` submodule has
    nothing for the rest to differ from, which is a ValueError.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if head_lr_mult == 1:
        return [{"params": [p for _, p in named]}]
    backbone = [p for n, p in named if n.startswith("backbone.")]
    if not backbone:
        raise ValueError(f"--head-lr-mult {head_lr_mult}: the model has no pretrained backbone ('backbone' "
                         f"submodule) whose learning rate the rest could differ from; leave --head-lr-mult at 1")
    head = [p for n, p in named if not n.startswith("backbone.")]
    return [{"params": backbone, "lr": lr}, {"params": head, "lr": lr * head_lr_mult}]


def build_optimizer(name: str, groups: list[dict], lr: float, momentum: float, weight_decay: float,
                    device: torch.device) -> Optimizer:
    """SGD with momentum or AdamW; fused kernels on CUDA (utils.faults.NonFiniteGuard relies on them
    to skip a non-finite step without a host sync)."""
    fused = {"fused": True} if device.type == "cuda" else {}
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **fused)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, **fused)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def poly_lr(optimizer: Optimizer, max_iters: int, power: float = 0.9, warmup_iters: int = 0) -> LambdaLR:
    """Per-iteration poly decay with an optional linear warm-up; step it once per iteration."""

    def factor(iteration: int) -> float:
        decay = max(0.0, 1 - iteration / max_iters) ** power
        if warmup_iters and iteration < warmup_iters:
            return decay * (iteration + 1) / warmup_iters
        return decay

    return LambdaLR(optimizer, factor)
