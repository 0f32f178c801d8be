"""The U-Net paper's per-pixel loss weights (Ronneberger et al., MICCAI 2015, Sec. 3, Eq. 2):

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)),   w0 = 10, sigma = 5 pixels,

which makes the network learn the thin separation borders between touching cells.

Conventions (the paper leaves them open):
- Cells are the 4-connected components (scipy.ndimage.label's default) of the
  `foreground` class (ISBI: 'cell', id 1); every other class is background.
- d1(x), d2(x): Euclidean distance from the centre of pixel x to the centre of
  the nearest pixel of the nearest and of the second-nearest cell
  (scipy.ndimage.distance_transform_edt of each cell's complement). Between two
  cells separated by a gap of g background pixels, the pixel midway (g odd) has
  d1 = d2 = (g + 1) / 2.
- The border term is added on background pixels only: the paper's Fig. 3d puts the
  weight on the separation borders; inside a cell d1 = 0 and the term would also
  raise the weight of cell pixels next to any membrane.
- w_c balances the class frequencies of this mask: w_c(x) = n / (K n_c) for a
  pixel of class c, with n the labelled pixels, n_c those of class c and K the
  number of classes present; so w_c averages to 1 over the labelled pixels.
- Ignore pixels (255) get weight 0 (they are also ignored by the loss).
- Speed: each cell's distance transform is computed in a window of its bounding
  box grown by `cutoff` pixels (default 6 sigma = 30 px). Beyond it the
  distance is taken as infinite; the term there is below w0 * exp(-18) < 2e-7.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from datasets.base import IGNORE_INDEX


def class_balance_weights(mask: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """w_c per pixel: n / (K n_c) for class c (mean 1 over labelled pixels); 0 on ignore pixels."""
    mask = np.asarray(mask)
    valid = mask != ignore_index
    weights = np.zeros(mask.shape, dtype=np.float32)
    classes, counts = np.unique(mask[valid], return_counts=True)
    if classes.size:
        per_class = valid.sum() / (classes.size * counts)
        lookup = dict(zip(classes.tolist(), per_class.tolist()))
        for c, w in lookup.items():
            weights[mask == c] = w
    return weights


def nearest_cell_distances(cells: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """(d1, d2): per-pixel distances to the nearest and second-nearest cell, inf beyond `cutoff`.

    `cells` is a label image of cells (0: background, 1..K: one id per cell).
    """
    height, width = cells.shape
    d1 = np.full(cells.shape, np.inf)
    d2 = np.full(cells.shape, np.inf)
    margin = int(math.ceil(cutoff))
    for index, box in enumerate(ndimage.find_objects(cells), start=1):
        if box is None:
            continue
        ys = slice(max(0, box[0].start - margin), min(height, box[0].stop + margin))
        xs = slice(max(0, box[1].start - margin), min(width, box[1].stop + margin))
        # The whole cell lies in the window, so the windowed transform is exact inside it.
        distance = ndimage.distance_transform_edt(cells[ys, xs] != index)
        near1, near2 = d1[ys, xs], d2[ys, xs]  # views: updated in place
        np.minimum(near2, np.maximum(near1, distance), out=near2)
        np.minimum(near1, distance, out=near1)
    return d1, d2


def unet_weight_map(mask, foreground: int = 1, w0: float = 10.0, sigma: float = 5.0,
                    ignore_index: int = IGNORE_INDEX, cutoff: float | None = None) -> np.ndarray:
    """The weight map w(x) of a label image [H, W] of class ids (float32, same shape).

    `cutoff` bounds the distances computed exactly (default 6 sigma); see the module's notes.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a label image [H, W], got shape {mask.shape}")
    weights = class_balance_weights(mask, ignore_index)
    if w0 == 0:
        return weights
    cells, count = ndimage.label(mask == foreground)
    if count < 2:  # no pair of cells, no separation border: d2 is infinite everywhere
        return weights
    d1, d2 = nearest_cell_distances(cells, 6 * sigma if cutoff is None else cutoff)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))
    background = (mask != foreground) & (mask != ignore_index)
    weights[background] += border[background].astype(np.float32)
    return weights


class UNetBorderWeights:
    """mask (tensor [H, W]) -> float32 weight map tensor: the per-sample hook of the training loader
    (`--pixel-weights unet-border`); a class, so that DataLoader workers can pickle it."""

    def __init__(self, foreground: int = 1, w0: float = 10.0, sigma: float = 5.0,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.foreground, self.w0, self.sigma, self.ignore_index = foreground, w0, sigma, ignore_index

    def __call__(self, mask) -> torch.Tensor:
        array = mask.as_subclass(torch.Tensor).numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        return torch.from_numpy(unet_weight_map(array, self.foreground, self.w0, self.sigma, self.ignore_index))
