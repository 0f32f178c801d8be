"""Data set registry: every data set is built by name.

Adding a data set is one module in this folder plus one line in DATASETS. A
data set class takes `(root, split, transforms, **options)`, has `classes`,
`palette`, `ignore_index` (255) and `folder` (its default root under SEG_DATA),
yields `(image, mask)`, and `read_mask(index)` gives the mask alone (see base.py).
"""
from __future__ import annotations

import os
from typing import Callable

from .ade20k import ADE20K
from .base import DatasetError, SegmentationDataset
from .camvid import CamVid
from .cityscapes import Cityscapes
from .folder import Folder
from .isbi import ISBI2012
from .shapes import Shapes
from .voc import VOC, VOCAug

DATASETS: dict[str, type[SegmentationDataset]] = {
    "shapes": Shapes,
    "voc": VOC,
    "voc_aug": VOCAug,
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "camvid": CamVid,
    "folder": Folder,
    "isbi": ISBI2012,
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_class(name: str) -> type[SegmentationDataset]:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(list_datasets())}")
    return DATASETS[name]


def build_dataset(name: str, split: str, root: str | os.PathLike | None = None,
                  transforms: Callable | None = None, **kwargs) -> SegmentationDataset:
    return dataset_class(name)(root, split, transforms, **kwargs)


__all__ = ["DATASETS", "DatasetError", "SegmentationDataset", "build_dataset", "dataset_class", "list_datasets"]
