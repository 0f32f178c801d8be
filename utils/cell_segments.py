"""Cell segments and cell masks from a cell-probability map, for the ISBI 2012 figures
(tools/isbi_report.py): the Rand error of segments, the pixel error of a thresholded map.

The class map's connected components are a poor segmentation to score with the
foreground-restricted Rand error (utils.metrics.RandScore): every predicted
membrane pixel inside a true cell counts as a segment of its own, and one pixel
missing from a membrane joins two cells into one. `filled_segments` segments instead in
two steps:
1. seeds: the 4-connected components of cell probability > `threshold`. A threshold
   above 0.5 shrinks the cells away from uncertain membrane pixels, so that a faint
   stretch of membrane still separates its two cells;
2. fill: every other pixel joins its nearest seed (Euclidean distance), so that the
   membranes between segments have no width and no pixel is left out.
A seeded region growing, like a watershed, here on the distance to the seeds rather
than on the probabilities, which needs no second parameter.

The pixel error has its own threshold: the U-Net paper's border weights (w0 = 10) make
the network call uncertain pixels membrane more often than the masks do, so the
best decision threshold on the cell probability can lie below 0.5 (docs/isbi.md).
Both thresholds are chosen on the training slices (`best_threshold`), never on the
held-out ones they are reported on.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
from scipy import ndimage

from datasets.base import IGNORE_INDEX

from .metrics import RandScore

# The grid reaches down to 0.01: on the CPU run of docs/isbi.md the pixel threshold chosen from
# 0.1 .. 0.95 was 0.1, the grid's edge, so the best one may lie below it.
THRESHOLDS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def filled_segments(cell_probability: np.ndarray, threshold: float) -> np.ndarray:
    """Segment labels [H, W] (1..n; all 0 when no pixel exceeds `threshold`) of one image."""
    probability = np.asarray(cell_probability)
    if probability.ndim != 2:
        raise ValueError(f"expected one [H, W] probability map, got shape {probability.shape}")
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    seeds, count = ndimage.label(probability > threshold)
    if count == 0:
        return seeds
    # For every pixel, the coordinates of the nearest seed pixel (distance to a zero of the mask).
    _, (rows, cols) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[rows, cols]


def filled_rand_error(probabilities: Iterable[np.ndarray], targets: Iterable[np.ndarray], threshold: float,
                      foreground: int = 1) -> float:
    """Rand error of `filled_segments` over several images, their sums pooled as RandScore pools slices."""
    score = RandScore(foreground)
    for probability, target in zip(probabilities, targets):
        score.update_segments(filled_segments(probability, threshold), target)
    return score.compute()["rand_error"]


def thresholded_pixel_error(probabilities: Iterable[np.ndarray], targets: Iterable[np.ndarray], threshold: float,
                            foreground: int = 1, ignore_index: int = IGNORE_INDEX) -> float:
    """Pixel error of "cell where probability > threshold", pooled over the images' labelled pixels."""
    wrong = labelled = 0
    for probability, target in zip(probabilities, targets):
        keep = np.asarray(target) != ignore_index
        wrong += int(((np.asarray(probability) > threshold) != (np.asarray(target) == foreground))[keep].sum())
        labelled += int(keep.sum())
    return wrong / labelled if labelled else float("nan")


def best_threshold(error_at: Callable[[float], float], thresholds: Sequence[float] = THRESHOLDS
                   ) -> tuple[float, dict[float, float]]:
    """The threshold of lowest `error_at(threshold)` (on training images), and every threshold's error."""
    errors = {t: error_at(t) for t in thresholds}
    return min(errors, key=errors.get), errors
