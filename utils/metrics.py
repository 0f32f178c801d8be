"""Confusion-matrix metrics: acc, acc_cls, mean_iu, fwavacc and per-class IoU.

The definitions are those of the FCN paper (Long et al. 2015, section 5):
with n_ij the pixels of class i predicted as j and t_i = sum_j n_ij,
  acc     = sum_i n_ii / sum_i t_i                      (pixel accuracy)
  acc_cls = mean_i n_ii / t_i                           (mean class accuracy)
  IoU_i   = n_ii / (t_i + sum_j n_ji - n_ii)
  mean_iu = mean_i IoU_i
  fwavacc = sum_i t_i IoU_i / sum_i t_i                 (frequency weighted IoU)
A class absent from both targets and predictions has no defined IoU and is
left out of the means (NaN in the per-class list).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix (rows: target, cols: prediction) on a device."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add predicted class ids and targets of the same shape; ignore-index pixels are skipped."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        target = target.to(self.matrix.device).flatten().long()
        prediction = prediction.to(self.matrix.device).flatten().long()
        keep = target != self.ignore_index
        target, prediction = target[keep], prediction[keep]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= self.num_classes):
            raise ValueError(f"target holds ids outside 0..{self.num_classes - 1} and {self.ignore_index}")
        n = self.num_classes
        self.matrix += torch.bincount(target * n + prediction, minlength=n * n).view(n, n)

    def reset(self) -> None:
        self.matrix.zero_()

    def all_reduce(self) -> None:
        """Sum the matrices of every process, so that each rank reports the same figures."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    def compute(self) -> dict:
        return metrics_from_confusion(self.matrix)


def metrics_from_confusion(matrix: torch.Tensor) -> dict:
    hist = matrix.double().cpu()
    diag = hist.diag()
    per_target = hist.sum(1)
    per_prediction = hist.sum(0)
    total = hist.sum()
    acc = (diag.sum() / total).item() if total > 0 else float("nan")
    acc_cls = _nanmean(diag / per_target)
    union = per_target + per_prediction - diag
    iou = diag / union  # NaN where the class is absent from both
    freq = per_target / total if total > 0 else per_target
    present = per_target > 0
    fwavacc = (freq[present] * iou[present]).sum().item()
    return {
        "acc": acc,
        "acc_cls": acc_cls,
        "mean_iu": _nanmean(iou),
        "fwavacc": fwavacc,
        "iou": iou.tolist(),
    }


def _nanmean(values: torch.Tensor) -> float:
    valid = values[~torch.isnan(values)]
    return valid.mean().item() if valid.numel() else float("nan")
