"""Confusion-matrix metrics: acc, acc_cls, mean_iu, fwavacc, per-class IoU and Dice;
the ISBI 2012 challenge's pixel error and foreground-restricted Rand error.

The definitions are those of the FCN paper (Long et al. 2015, section 5):
with n_ij the pixels of class i predicted as j and t_i = sum_j n_ij,
  acc     = sum_i n_ii / sum_i t_i                      (pixel accuracy)
  acc_cls = mean_i n_ii / t_i                           (mean class accuracy)
  IoU_i   = n_ii / (t_i + sum_j n_ji - n_ii)
  mean_iu = mean_i IoU_i
  fwavacc = sum_i t_i IoU_i / sum_i t_i                 (frequency weighted IoU)
plus, as medical and few-class benchmarks report it, the Dice coefficient (F1):
  Dice_i    = 2 n_ii / (t_i + sum_j n_ji) = 2 IoU_i / (1 + IoU_i)
  mean_dice = mean_i Dice_i
computed from the same confusion matrix, i.e. pooled over every pixel of the split,
not averaged per image.
A class absent from both targets and predictions has no defined IoU or Dice and
is left out of the means (NaN in the per-class lists).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from scipy import ndimage

from datasets.base import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix (rows: target, cols: prediction) on a device."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add predicted class ids and targets of the same shape; ignore-index pixels are skipped."""
        prediction, target = valid_pixels(prediction, target, self.num_classes, self.ignore_index,
                                          self.matrix.device, "prediction")
        n = self.num_classes
        self.matrix += torch.bincount(target * n + prediction.long(), minlength=n * n).view(n, n)

    def all_reduce(self) -> None:
        """Sum the matrices of every process, so that each rank reports the same figures."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix)

    def compute(self) -> dict:
        return metrics_from_confusion(self.matrix)


def valid_pixels(values: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int,
                 device: torch.device, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`values` and `target` (of one shape) flattened onto `device`, without the pixels whose target
    is `ignore_index`; targets are int64. A target id outside 0..num_classes-1 is an error."""
    if values.shape != target.shape:
        raise ValueError(f"{name} {tuple(values.shape)} and target {tuple(target.shape)} differ in shape")
    target = target.to(device).flatten().long()
    keep = target != ignore_index
    values, target = values.to(device).flatten()[keep], target[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        valid = "0, 1" if num_classes == 2 else f"0..{num_classes - 1}"
        raise ValueError(f"target holds ids other than {valid} and {ignore_index}: outside the {num_classes} classes")
    return values, target


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
    dice = 2 * diag / (per_target + per_prediction)  # NaN where the class is absent from both
    return {
        "acc": acc,
        "acc_cls": acc_cls,
        "mean_iu": _nanmean(iou),
        "fwavacc": fwavacc,
        "mean_dice": _nanmean(dice),
        "iou": iou.tolist(),
        "dice": dice.tolist(),
        "confusion": matrix.cpu().tolist(),  # raw pixel counts, rows: target, columns: prediction
    }


def _nanmean(values: torch.Tensor) -> float:
    valid = values[~torch.isnan(values)]
    return valid.mean().item() if valid.numel() else float("nan")


# ----------------------------------------------------------------- ISBI 2012 figures

def pixel_error(prediction: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    """Fraction of labelled pixels whose predicted class differs from the target (1 - acc)."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    keep = target != ignore_index
    total = int(keep.sum())
    return float((prediction[keep] != target[keep]).sum()) / total if total else float("nan")


class RandScore:
    """The foreground-restricted Rand score V_rand of the ISBI 2012 challenge, accumulated over images.

    Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation
    algorithms for connectomics", Frontiers in Neuroanatomy 2015, Sec. 2, in its
    notation: n_ij pixels lie in segment i of the prediction S and in segment j of
    the ground truth T, s_i = sum_j n_ij (predicted sizes), t_j = sum_i n_ij (true sizes):
        V_split = sum_ij n_ij^2 / sum_j t_j^2   (normalised by the true sizes: the chance that two
                                                 pixels of one true segment share a predicted one;
                                                 splitting a cell lowers it)
        V_merge = sum_ij n_ij^2 / sum_i s_i^2   (normalised by the predicted sizes; merging cells
                                                 lowers it)
        V_rand = 2 sum_ij n_ij^2 / (sum_i s_i^2 + sum_j t_j^2),   Rand error = 1 - V_rand
    (the harmonic mean of the two; the paper writes p_ij = n_ij / n, and the n^2 cancels). Conventions:
    - Segments are the 4-connected components (scipy.ndimage.label's default) of
      the `foreground` class (ISBI: cell, id 1), in the ground truth and in the
      prediction separately; membrane pixels separate them.
    - Foreground-restricted: only pixels that are foreground in the ground truth
      count (membrane and ignore (255) pixels of the ground truth are left out).
    - A predicted membrane pixel inside a ground-truth cell is its own singleton
      segment (the adapted Rand convention of the challenge's and SNEMI3D's
      scripts): it adds 1 to sum n_ij^2 and 1 to sum s_i^2, so predicting thin
      spurious membranes is penalised without merging anything.
    - Over several images (slices) the sums are pooled: each slice's segments are
      distinct, as if the slices were labelled in 2D and stacked. The score of a
      single image is `rand_error(prediction, target)`.
    """

    def __init__(self, foreground: int = 1) -> None:
        self.foreground = foreground
        self.sum_joint = self.sum_true = self.sum_pred = 0

    def update(self, prediction, target) -> None:
        """Add one image (or a batch [N, H, W], each image labelled on its own) of class ids."""
        prediction, target = _as_numpy(prediction), _as_numpy(target)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
        if prediction.ndim == 3:
            for p, t in zip(prediction, target):
                self.update(p, t)
            return
        self.update_segments(ndimage.label(prediction == self.foreground)[0], target)

    def update_segments(self, segments, target) -> None:
        """Add one image whose predicted segments are given as labels (0: no segment, as a
        predicted membrane pixel; for example utils.cell_segments.filled_segments) instead of
        the class map's connected components."""
        segments, target = _as_numpy(segments), _as_numpy(target)
        if segments.shape != target.shape or segments.ndim != 2:
            raise ValueError(f"segments {segments.shape} and target {target.shape} must be one image of one shape")
        joint, true, pred = _rand_sums(segments, target == self.foreground)
        self.sum_joint += joint
        self.sum_true += true
        self.sum_pred += pred

    def compute(self) -> dict:
        denominator = self.sum_true + self.sum_pred
        v_rand = 2 * self.sum_joint / denominator if denominator else float("nan")
        return {"v_rand": v_rand, "rand_error": 1 - v_rand,
                "rand_split": self.sum_joint / self.sum_true if self.sum_true else float("nan"),
                "rand_merge": self.sum_joint / self.sum_pred if self.sum_pred else float("nan")}


def rand_error(prediction, target, foreground: int = 1) -> float:
    """Foreground-restricted Rand error of one image (or a pooled batch): see `RandScore`."""
    score = RandScore(foreground)
    score.update(prediction, target)
    return score.compute()["rand_error"]


def _as_numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def _rand_sums(pred_ids, true_fg) -> tuple[int, int, int]:
    """(sum n_ij^2, sum of the true sizes^2, sum of the predicted sizes^2) over ground-truth
    foreground pixels, in pixel counts, of predicted segment labels `pred_ids` (0: none)
    against the true cells' components."""
    true_ids, _ = ndimage.label(true_fg)
    inside = true_ids > 0
    t, p = true_ids[inside].astype(np.int64), pred_ids[inside].astype(np.int64)
    singletons = int((p == 0).sum())  # predicted membrane inside a true cell: one segment per pixel
    sizes_true = np.bincount(t)
    joined = p > 0
    pairs = t[joined] * (int(p.max(initial=0)) + 1) + p[joined]
    joint = np.unique(pairs, return_counts=True)[1]
    sizes_pred = np.bincount(p[joined])
    return (int((joint ** 2).sum()) + singletons, int((sizes_true ** 2).sum()),
            int((sizes_pred ** 2).sum()) + singletons)
