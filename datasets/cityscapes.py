"""Cityscapes: urban street scenes, 19 evaluated classes.

Download (after registering): https://www.cityscapes-dataset.com/downloads/
    leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip; for mode='coarse' also
    gtCoarse.zip and leftImg8bit_trainextra.zip. Unpack all into one folder.
Cite:
    Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016.

Labels: the *_labelIds.png files hold the 34 official label ids 0..33; they are
mapped to the 19 train ids of cityscapesScripts' labels.py and every other id
(void, rare classes such as caravan or guard rail) to 255. The license plate id
is -1 in labels.py; should it appear as 255 in a PNG it stays ignored.
"""
from __future__ import annotations

import numpy as np

from .base import IGNORE_INDEX, DatasetError, FilePairDataset, check_split
from .pairing import pair_files

# label id -> train id, from cityscapesScripts/helpers/labels.py. The ids not listed here map to
# IGNORE_INDEX: 0..6 (unlabeled, ego vehicle, ... ground), 9 parking, 10 rail track, 14 guard rail,
# 15 bridge, 16 tunnel, 18 polegroup, 29 caravan, 30 trailer.
_EVALUATED = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7,     # road, sidewalk, building, wall, fence, pole, ...
    21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,     # vegetation ... truck
    28: 15, 31: 16, 32: 17, 33: 18,                           # bus, train, motorcycle, bicycle
}
LABEL_TO_TRAIN_ID = {label_id: _EVALUATED.get(label_id, IGNORE_INDEX) for label_id in range(34)}
LICENSE_PLATE_ID = -1  # stored as 255 in an 8-bit PNG
CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
           "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
           "motorcycle", "bicycle")
PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
           (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
           (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
           (0, 80, 100), (0, 0, 230), (119, 11, 32))


def _lookup() -> np.ndarray:
    table = np.full(256, -1, dtype=np.int64)  # -1: an id Cityscapes does not define
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    table[LICENSE_PLATE_ID % 256] = IGNORE_INDEX
    return table


class Cityscapes(FilePairDataset):
    """Cityscapes, fine or coarse annotations.

    root: the folder holding leftImg8bit/ and gtFine/ (and gtCoarse/ for mode='coarse').
    mode='fine' (default): splits train (2975), val (500), test (1525; labels withheld:
    samples have no label, `load` raises, `load_image` works, for predict.py).
    mode='coarse': splits train (2975), train_extra (19998), val (500) with gtCoarse labels.
    """

    folder = "cityscapes"
    classes = CLASSES
    palette = PALETTE
    lookup = _lookup()
    modes = {"fine": ("train", "val", "test"), "coarse": ("train", "train_extra", "val")}

    def __init__(self, root=None, split: str = "train", transforms=None, *, mode: str = "fine") -> None:
        if mode not in self.modes:
            raise ValueError(f"unknown cityscapes mode {mode!r}; choose one of: {', '.join(self.modes)}")
        check_split(f"cityscapes ({mode})", split, self.modes[mode])
        self.root = self.resolve_root("cityscapes", root)
        self.mode = mode
        gt = "gtFine" if mode == "fine" else "gtCoarse"
        image_dir = self.root / "leftImg8bit" / split
        label_dir = self.root / gt / split
        if not image_dir.is_dir():
            raise DatasetError(f"missing folder {image_dir}")
        cities = sorted(p.name for p in image_dir.iterdir() if p.is_dir())
        samples = []
        if split == "test":
            # gtFine/test holds placeholder files only: the test labels are withheld.
            for city in cities:
                samples += [(p, None) for p in sorted((image_dir / city).glob("*_leftImg8bit.png"))]
        else:
            if not label_dir.is_dir():
                raise DatasetError(f"missing folder {label_dir}")
            orphans = sorted(p.name for p in label_dir.iterdir() if p.is_dir() and p.name not in cities)
            if orphans:
                raise DatasetError(f"labels {label_dir / orphans[0]} have no images in {image_dir}")
            for city in cities:
                samples += pair_files(image_dir / city, label_dir / city, image_name="{id}_leftImg8bit",
                                      mask_name=f"{{id}}_{gt}_labelIds")
        if not samples:
            raise DatasetError(f"no images in {image_dir}")
        super().__init__(samples, split, transforms)

    def sample_name(self, index: int) -> str:
        return self.samples[index][0].stem.removesuffix("_leftImg8bit")
