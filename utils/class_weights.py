"""Class weights for the loss, computed from a data set's training masks.

Methods (`--class-weights`):
- `median-freq`: median frequency balancing (Eigen and Fergus, ICCV 2015, Sec. 4.1;
  the SegNet paper's CamVid setting): freq(c) = pixels of class c / pixels of the
  images in which c is present, weight(c) = median over classes of freq / freq(c).
- `inverse-log`: ENet's weighting (Paszke et al. 2016, Sec. 4):
  weight(c) = 1 / ln(1.02 + p(c)), p(c) = pixels of class c / all pixels.
- `none`: no weights.
Pixels are counted on the masks as stored (no augmentation), leaving out ignore
pixels (IGNORE_INDEX, 255) everywhere, including in "pixels of the images". A class that never
occurs gets weight 0: it has no pixels, so its weight never enters the loss.

Cache: counting reads every training mask once (seconds for CamVid, minutes for
Cityscapes), so the counts (not the weights: one count serves every method) are
kept in SEG_RUNS/class_weights/<data set>-<split>-<key>.json, where <key> hashes
the data set's name, split, resolved root, options, sample count and its label
files' names, sizes and modification times; any change to those counts again.
Delete the folder to force a recount.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

import config
from datasets.base import IGNORE_INDEX

METHODS = ("none", "median-freq", "inverse-log")


def count_pixels(masks: Iterable, num_classes: int, ignore_index: int = IGNORE_INDEX) -> dict:
    """Per class: `pixels` (of that class) and `image_pixels` (labelled pixels of the images holding it)."""
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    images = 0
    for mask in masks:
        mask = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        ids = mask[mask != ignore_index].astype(np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(f"mask holds ids outside 0..{num_classes - 1} and {ignore_index}")
        counts = np.bincount(ids, minlength=num_classes)
        pixels += counts
        image_pixels[counts > 0] += ids.size
        images += 1
    return {"pixels": pixels.tolist(), "image_pixels": image_pixels.tolist(), "images": images}


def median_frequency_weights(counts: dict) -> list[float]:
    pixels = np.asarray(counts["pixels"], dtype=np.float64)
    image_pixels = np.asarray(counts["image_pixels"], dtype=np.float64)
    present = pixels > 0
    freq = np.zeros_like(pixels)
    freq[present] = pixels[present] / image_pixels[present]
    if not present.any():
        raise ValueError("no labelled pixel in the masks: cannot compute class weights")
    median = np.median(freq[present])
    weights = np.zeros_like(pixels)
    weights[present] = median / freq[present]
    return weights.tolist()


def inverse_log_weights(counts: dict, c: float = 1.02) -> list[float]:
    pixels = np.asarray(counts["pixels"], dtype=np.float64)
    total = pixels.sum()
    if total == 0:
        raise ValueError("no labelled pixel in the masks: cannot compute class weights")
    return [1 / math.log(c + p) if n > 0 else 0.0 for n, p in zip(pixels, pixels / total)]


def weights_from_counts(method: str, counts: dict) -> list[float] | None:
    if method not in METHODS:
        raise ValueError(f"unknown class weighting {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "none":
        return None
    return median_frequency_weights(counts) if method == "median-freq" else inverse_log_weights(counts)


def _masks(dataset) -> Iterable:
    """The data set's masks as stored, without its transforms (`read_mask`: label files only where possible)."""
    for index in range(len(dataset)):
        yield dataset.read_mask(index)


def _cache_key(name: str, dataset, dataset_kwargs: dict) -> dict:
    key = {"dataset": name, "split": getattr(dataset, "split", None),
           "root": str(Path(getattr(dataset, "root", "")).resolve()) if hasattr(dataset, "root") else None,
           "dataset_kwargs": dataset_kwargs, "samples": len(dataset),
           "num_classes": dataset.num_classes, "ignore_index": dataset.ignore_index,
           # what the mask values mean (the folder data set's dataset.json): editing it changes the counts
           "declaration": repr(getattr(dataset, "declaration", None))}
    labels = [s[1] for s in getattr(dataset, "samples", []) if isinstance(s, (tuple, list)) and len(s) > 1]
    digest = hashlib.sha1()
    for label in labels:
        if label is not None:
            stat = os.stat(label)
            digest.update(f"{label}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    key["labels"] = digest.hexdigest()
    return key


def pixel_counts(name: str, dataset, dataset_kwargs: dict | None = None, cache_dir: Path | None = None) -> dict:
    """Counts of `dataset`'s masks (see `count_pixels`), read from or written to the cache."""
    key = _cache_key(name, dataset, dataset_kwargs or {})
    tag = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else config.runs_dir() / "class_weights"
    path = folder / f"{name}-{key['split']}-{tag}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return cached["counts"]
        except (OSError, ValueError):
            pass  # unreadable cache: count again
    counts = count_pixels(_masks(dataset), dataset.num_classes, dataset.ignore_index)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".tmp{os.getpid()}")
        temporary.write_text(json.dumps({"key": key, "counts": counts}, indent=1))
        temporary.replace(path)  # atomic: processes counting at once each write a whole file
    except OSError:
        pass  # a read-only runs folder only costs a recount next time
    return counts


def compute_class_weights(method: str, name: str, dataset, dataset_kwargs: dict | None = None,
                          cache_dir: Path | None = None) -> torch.Tensor | None:
    """The weights of `method` for `dataset`'s classes (float32 [num_classes]), or None for 'none'."""
    if method == "none":
        return None
    weights = weights_from_counts(method, pixel_counts(name, dataset, dataset_kwargs, cache_dir))
    return torch.tensor(weights, dtype=torch.float32)


def format_weights(method: str, weights: torch.Tensor, classes) -> str:
    return f"class weights ({method}): " + ", ".join(f"{c} {w:.4f}" for c, w in zip(classes, weights.tolist()))
