"""U-Net on ISBI 2012 with a Dice + cross-entropy loss: how to change what the engine builds.

An example of the engine's extension points (utils/engine.py, `Trainer`):
this script keeps everything of train/isbi-u-net/train.py (the U-Net paper's
recipe, its flags, resume, checkpoints, evaluation) and replaces one part,
the loss, by overriding `Trainer.build_loss`. The other builders work the
same way: `build_transforms`, `param_groups`, `build_optimizer`, and the
per-step hook `after_step`.

Loss: cross-entropy (with the paper's border weight map, as in isbi-u-net)
plus `dice_weight` x (1 - soft Dice), the soft Dice averaged over the classes
(Milletari et al., "V-Net", 3DV 2016, Eq. 1, with squared denominators);
pixels labelled 255 take no part in either term.

CPU recipe (the same flags as isbi-u-net's):
    python train/isbi-u-net-dice/train.py --model-kwargs '{"width": 16}' --crop-size 256 --batch-size 2 \\
        --optimizer adamw --lr 1e-3 --weight-decay 1e-4 --iters 800 --val-every 200 \\
        --val-tile 256 --val-stride 192 --val-mirror-margin 32 --workers 1 --device cpu
"""
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import torch
from torch import nn

from utils.engine import Trainer, run
from utils.losses import SegmentationLoss

# The paper's recipe, unchanged: this script differs only in the loss.
cfg = runpy.run_path(str(Path(__file__).resolve().parents[1] / "isbi-u-net" / "train.py"))["cfg"]


class DiceCrossEntropy(nn.Module):
    """cross-entropy (weighted as SegmentationLoss weights it) + dice_weight x (1 - mean soft Dice)."""

    def __init__(self, cross_entropy: SegmentationLoss, dice_weight: float = 1.0, eps: float = 1.0) -> None:
        super().__init__()
        self.cross_entropy, self.dice_weight, self.eps = cross_entropy, dice_weight, eps

    def forward(self, outputs: dict, targets: torch.Tensor, pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        logits = outputs["out"].float()
        valid = (targets != self.cross_entropy.ignore_index).unsqueeze(1)
        probabilities = logits.softmax(1) * valid
        one_hot = torch.zeros_like(probabilities).scatter_(1, (targets * valid[:, 0]).unsqueeze(1), 1) * valid
        dims = (0, 2, 3)
        overlap = (probabilities * one_hot).sum(dims)
        total = probabilities.pow(2).sum(dims) + one_hot.sum(dims)  # one_hot squared is one_hot
        dice = (2 * overlap + self.eps) / (total + self.eps)
        return self.cross_entropy(outputs, targets, pixel_weights) + self.dice_weight * (1 - dice.mean())


class DiceTrainer(Trainer):
    def build_loss(self, class_weights):
        return DiceCrossEntropy(super().build_loss(class_weights))


if __name__ == "__main__":
    run(cfg, trainer=DiceTrainer)
