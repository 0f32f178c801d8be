"""PASCAL VOC 2012 segmentation, and its SBD-augmented training set (`train_aug`).

Download:
    VOC 2012:  http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar
               (unpacks to VOCdevkit/VOC2012)
    SBD:       http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz
               (unpacks to benchmark_RELEASE)
Cite:
    Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 2010.
    Hariharan et al., "Semantic Contours from Inverse Detectors", ICCV 2011 (SBD).

Labels: VOC's SegmentationClass PNGs are palette images whose indices are the
class ids 0..20; index 255 marks object borders and "difficult" regions and
stays 255 (ignored). SBD's cls/*.mat files hold the same 21 ids in
GTcls.Segmentation, without a border.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from .base import (DatasetError, FilePairDataset, check_split, descend, generated_palette,
                   read_split_list, require_file)

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
# The VOCdevkit's own colour map (labelcolormap.m) is this bit-interleaving rule.
VOC_PALETTE = generated_palette(len(VOC_CLASSES))


def _voc_pairs(voc_dir: Path, ids: list[str]) -> list[tuple[Path, Path]]:
    return [(require_file(voc_dir / "JPEGImages" / f"{i}.jpg", "image"),
             require_file(voc_dir / "SegmentationClass" / f"{i}.png", "label")) for i in ids]


class VOC(FilePairDataset):
    """PASCAL VOC 2012 segmentation: 21 classes, splits train (1464), val (1449), trainval.

    root: the VOC2012 folder (holding JPEGImages/, SegmentationClass/, ImageSets/), or a
    folder holding VOCdevkit/VOC2012 or VOC2012.
    """

    folder = "VOCdevkit/VOC2012"
    classes = VOC_CLASSES
    palette = VOC_PALETTE
    splits = ("train", "val", "trainval")

    def __init__(self, root=None, split: str = "train", transforms=None) -> None:
        check_split("voc", split, self.splits)
        self.root = descend(self.resolve_root("voc", root), "JPEGImages", ("VOC2012", "VOCdevkit/VOC2012"))
        ids = read_split_list(self.root / "ImageSets" / "Segmentation" / f"{split}.txt")
        super().__init__(_voc_pairs(self.root, ids), split, transforms)


class VOCAug(FilePairDataset):
    """VOC 2012 with the SBD annotations added: `train_aug` (10582 images; `train` is the
    same split) and `val` (VOC val, 1449).

    root: a folder holding both VOCdevkit/VOC2012 and benchmark_RELEASE (unpack both
    archives into the same folder; by default that folder is SEG_DATA itself, so that
    `voc` and `voc_aug` share one copy of VOC).

    train_aug = SBD train + SBD val + VOC train, minus every VOC val image, each id once.
    Labels: an id that VOC annotates (VOC train) uses VOC's PNG: it is the official
    annotation, drawn more carefully, with the 255 border the evaluation also ignores.
    Every other id uses SBD's cls/<id>.mat with SBD's copy of the image
    (benchmark_RELEASE/dataset/img/<id>.jpg), so each pair comes from one source.
    """

    # VOCdevkit/VOC2012 and benchmark_RELEASE side by side: by default both sit directly in
    # SEG_DATA, so voc and voc_aug share one copy of VOC.
    folder = "."
    classes = VOC_CLASSES
    palette = VOC_PALETTE
    splits = ("train_aug", "train", "val")  # "train" is train_aug, so generic scripts work

    def __init__(self, root=None, split: str = "train_aug", transforms=None) -> None:
        check_split("voc_aug", split, self.splits)
        self.root = self.resolve_root("voc_aug", root)
        voc_dir = descend(self.root, "JPEGImages", ("VOCdevkit/VOC2012", "VOC2012"))
        sbd_dir = self.root / "benchmark_RELEASE" / "dataset"
        expected = ((voc_dir / "JPEGImages", self.root / "VOCdevkit" / "VOC2012"),
                    (sbd_dir / "cls", sbd_dir / "cls"))
        for marker, folder in expected:
            if not marker.is_dir():
                raise DatasetError(
                    f"voc_aug: missing folder {folder}; the voc_aug root {self.root} must hold both "
                    f"VOCdevkit/VOC2012 and benchmark_RELEASE (see datasets/README.md). By default it is "
                    f"SEG_DATA itself; or pass --data-root DIR.")
        lists = voc_dir / "ImageSets" / "Segmentation"
        voc_val = read_split_list(lists / "val.txt")
        if split == "val":
            samples = _voc_pairs(voc_dir, voc_val)
        else:
            voc_train = set(read_split_list(lists / "train.txt"))
            sbd_ids = set(read_split_list(sbd_dir / "train.txt")) | set(read_split_list(sbd_dir / "val.txt"))
            samples = []
            for i in sorted((sbd_ids | voc_train) - set(voc_val)):
                if i in voc_train:
                    samples += _voc_pairs(voc_dir, [i])
                else:
                    samples.append((require_file(sbd_dir / "img" / f"{i}.jpg", "image"),
                                    require_file(sbd_dir / "cls" / f"{i}.mat", "label")))
        self.voc_dir, self.sbd_dir = voc_dir, sbd_dir
        super().__init__(samples, split, transforms)

    def read_ids(self, path: Path) -> np.ndarray:
        if path.suffix != ".mat":
            return super().read_ids(path)
        try:
            gt = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)["GTcls"]
            ids = np.asarray(gt.Segmentation)
        except Exception as err:  # scipy raises several types for bad files
            raise DatasetError(f"cannot read label {path} (an SBD GTcls .mat with a Segmentation "
                               f"field): {type(err).__name__}: {err}") from None
        if ids.ndim != 2:
            raise DatasetError(f"label {path}: GTcls.Segmentation has shape {ids.shape}, expected H x W")
        return ids.astype(np.int64)
