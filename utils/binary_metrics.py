"""Two-class figures, as retinal-vessel, lesion and polyp papers report them.

For a data set of two classes (0: background, 1: the structure), over the valid
(not ignored) pixels of a whole split:

- from the confusion matrix of the argmax predictions (rows: target, columns:
  prediction; utils.metrics.ConfusionMatrix), with TP, FN, FP, TN of class 1:
    sensitivity = TP / (TP + FN)   (recall of class 1)
    specificity = TN / (TN + FP)
    precision   = TP / (TP + FP)
    f1          = 2 TP / (2 TP + FP + FN)   (the Dice of class 1)
- from class 1's probability, over every threshold:
    best_f1, best_f1_threshold
                      the highest F1 of any threshold on class 1's probability,
                      and that threshold: a choice made on the very pixels it is
                      scored on, so an optimistic figure on a held-out split; on
                      the training images it is a fair way to pick a threshold
                      (eval.py --split train; the `--threshold` setting)
    roc_auc           area under the ROC curve (the Mann-Whitney rank statistic:
                      the chance that a random class-1 pixel scores above a
                      random class-0 pixel, ties counting one half)
    average_precision area under the precision-recall curve, as the step sum
                      sum_n (R_n - R_{n-1}) P_n over descending thresholds
                      (scikit-learn's average_precision_score)

Method for the areas: an exact rank statistic needs every pixel's score in
memory (a DRIVE test split is 20 x 584 x 565 = 6.6 million pixels; Cityscapes-
sized splits are billions). Instead `ScoreHistogram` counts, for target 0 and
target 1 separately, the pixels whose class-1 log-odds z = log(p1 / p0)
(= logit_1 - logit_0, a monotone function of p1) fall in each of BINS = 65,536
equal bins over [-32, 32] (1/1024 wide; values beyond fall in the end bins). It
lives on the model's device and is updated with torch.bincount like the
confusion matrix, all-reduced under DDP, and takes 1 MiB whatever the split's
size. The areas are then exact for the binned scores: pixels of one bin are
ties. The AUC's error against the exact rank statistic is therefore at most
half the share of (class 1, class 0) pixel pairs that share a bin; that bound
is computed for every evaluation and reported as `roc_auc_max_error`.
Measured (`python benchmarks/binary_metrics_error.py`: 400,000 pixels for each of
five score distributions, from a weak model (AUC 0.75) to confident ones, against
the exact statistics in float64): largest error 1.1e-7 for ROC AUC and 4.7e-5 for
average precision while the log-odds stay within +-32; 2.6e-5 and 8.6e-5 when a
large share of them lies beyond (class means at -25 and +20, sd 8), which float32
probabilities could not order either (p1 rounds to 1 beyond log-odds of about 17).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from datasets.base import IGNORE_INDEX

from .metrics import valid_pixels

BINS = 65536
LOG_ODDS_LIMIT = 32.0
BINARY_KEYS = ("sensitivity", "specificity", "precision", "f1", "roc_auc", "average_precision")


def class_one_log_odds(output: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
    """log(p1 / p0) [N, H, W] of a two-class output [N, 2, H, W]: logits, or softmax
    probabilities when `probabilities` (utils.inference's semseg protocol returns those)."""
    if output.ndim != 4 or output.shape[1] != 2:
        raise ValueError(f"expected a two-class output [N, 2, H, W], got {tuple(output.shape)}")
    output = output.float()
    if probabilities:
        output = output.clamp_min(torch.finfo(torch.float32).tiny).log()
    return output[:, 1] - output[:, 0]


class ScoreHistogram:
    """Counts [2, BINS] of class-1 log-odds per target class (0, 1), on a device."""

    def __init__(self, device: torch.device | str = "cpu", ignore_index: int = IGNORE_INDEX,
                 bins: int = BINS, limit: float = LOG_ODDS_LIMIT) -> None:
        self.bins, self.limit, self.ignore_index = bins, limit, ignore_index
        self.counts = torch.zeros(2, bins, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, log_odds: torch.Tensor, target: torch.Tensor) -> None:
        """Add class-1 log-odds and targets (0, 1 or ignore_index) of the same shape."""
        scores, target = valid_pixels(log_odds, target, 2, self.ignore_index, self.counts.device, "scores")
        scaled = (scores.float().nan_to_num(0.0).clamp(-self.limit, self.limit) + self.limit) * (self.bins / (2 * self.limit))
        index = scaled.long().clamp(0, self.bins - 1)
        self.counts += torch.bincount(target * self.bins + index, minlength=2 * self.bins).view(2, self.bins)

    def all_reduce(self) -> None:
        """Sum the histograms of every process, so that each rank reports the same figures."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.counts)

    def compute(self) -> dict:
        return areas_from_histogram(self.counts)


def _from_the_top(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-0 and class-1 counts of each bin, then the class-0 (false positive) and class-1 (true
    positive) pixels at or above each bin, in descending score (thresholds from strict to lenient),
    from counts [2, bins] in ascending score."""
    counts = counts.double().cpu().flip(1)
    return counts[0], counts[1], counts[0].cumsum(0), counts[1].cumsum(0)


def areas_from_histogram(counts: torch.Tensor) -> dict:
    """roc_auc, average_precision and roc_auc_max_error from counts [2, bins] (row 0: class-0
    pixels, row 1: class-1 pixels, bins in ascending score); NaN without pixels of either class."""
    negatives, positives, false_pos, true_pos = _from_the_top(counts)
    n_neg, n_pos = negatives.sum().item(), positives.sum().item()
    nan = float("nan")
    if n_pos == 0:
        return {"roc_auc": nan, "average_precision": nan, "roc_auc_max_error": nan}
    taken = true_pos + false_pos
    precision = torch.where(taken > 0, true_pos / taken.clamp_min(1), torch.ones_like(taken))
    average_precision = (positives / n_pos * precision).sum().item()
    if n_neg == 0:
        return {"roc_auc": nan, "average_precision": average_precision, "roc_auc_max_error": nan}
    below = n_neg - false_pos  # class-0 pixels in lower bins
    pairs = n_pos * n_neg
    roc_auc = ((positives * (below + 0.5 * negatives)).sum() / pairs).item()
    max_error = (0.5 * (positives * negatives).sum() / pairs).item()
    return {"roc_auc": roc_auc, "average_precision": average_precision, "roc_auc_max_error": max_error}


def best_f1_from_histogram(counts: torch.Tensor, limit: float = LOG_ODDS_LIMIT) -> dict:
    """best_f1 and best_f1_threshold (a probability of class 1) over the thresholds at the bins'
    lower edges, from counts [2, bins] as `areas_from_histogram` reads them; NaN without class-1
    pixels. Predicting class 1 from bin k upwards gives TP = class-1 pixels in bins >= k, FP the
    class-0 ones, and F1 = 2 TP / (TP + FP + all class-1 pixels)."""
    _, positives, false_pos, true_pos = _from_the_top(counts)
    bins, n_pos = len(positives), positives.sum()
    if n_pos == 0:
        return {"best_f1": float("nan"), "best_f1_threshold": float("nan")}
    f1 = (2 * true_pos / (true_pos + false_pos + n_pos)).flip(0)  # f1[k]: class 1 from bin k upwards
    k = int(f1.argmax())
    edge = -limit + k * (2 * limit / bins)  # the log-odds at bin k's lower edge
    return {"best_f1": f1[k].item(), "best_f1_threshold": torch.sigmoid(torch.tensor(edge, dtype=torch.float64)).item()}


def binary_metrics(confusion: torch.Tensor, histogram: ScoreHistogram | torch.Tensor) -> dict:
    """Every two-class figure (BINARY_KEYS, plus roc_auc_max_error) from a 2 x 2 confusion matrix
    (rows: target) and a `ScoreHistogram` (or its counts) of the same pixels."""
    if tuple(confusion.shape) != (2, 2):
        raise ValueError(f"two-class figures need a 2 x 2 confusion matrix, got {tuple(confusion.shape)}")
    m = confusion.double().cpu()
    tn, fp, fn, tp = m[0, 0].item(), m[0, 1].item(), m[1, 0].item(), m[1, 1].item()

    def ratio(num: float, den: float) -> float:
        return num / den if den > 0 else float("nan")

    counts = histogram.counts if isinstance(histogram, ScoreHistogram) else histogram
    return {"sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp),
            "f1": ratio(2 * tp, 2 * tp + fp + fn), **areas_from_histogram(counts), **best_f1_from_histogram(counts)}


def format_binary(metrics: dict) -> str:
    """One line of the two-class figures, for eval.py's table and the engine's validation line."""
    return " ".join(f"{key} {metrics[key]:.4f}" for key in BINARY_KEYS)
