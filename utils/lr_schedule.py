"""Poly learning-rate schedule (DeepLab, PSPNet): lr = base * (1 - it / max_it) ** power."""
from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def poly_lr(optimizer: Optimizer, max_iters: int, power: float = 0.9, warmup_iters: int = 0) -> LambdaLR:
    """Per-iteration poly decay with an optional linear warm-up; step it once per iteration."""

    def factor(iteration: int) -> float:
        decay = max(0.0, 1 - iteration / max_iters) ** power
        if warmup_iters and iteration < warmup_iters:
            return decay * (iteration + 1) / warmup_iters
        return decay

    return LambdaLR(optimizer, factor)
