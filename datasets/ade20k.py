"""ADE20K scene parsing (MIT SceneParsing benchmark, SceneParse150): 150 classes.

Download: http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip
          (benchmark page: http://sceneparsing.csail.mit.edu/)
Cite:
    Zhou et al., "Scene Parsing through ADE20K Dataset", CVPR 2017.
    Zhou et al., "Semantic Understanding of Scenes through the ADE20K Dataset", IJCV 2019.

Labels: annotations/*.png hold 0 ("other", not evaluated) and the class ids 1..150
of objectInfo150; 0 becomes 255 (ignored) and 1..150 become 0..149.
"""
from __future__ import annotations

import numpy as np

from .base import IGNORE_INDEX, FilePairDataset, check_split, descend, generated_palette
from .pairing import pair_files

# The first name of each row of the benchmark's objectInfo150 list, in id order.
CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
assert len(CLASSES) == 150

SPLIT_FOLDERS = {"train": "training", "val": "validation"}


def _lookup() -> np.ndarray:
    table = np.arange(-1, len(CLASSES), dtype=np.int64)  # raw id k -> k - 1
    table[0] = IGNORE_INDEX
    return table


class ADE20K(FilePairDataset):
    """ADE20K / SceneParse150: splits train (20210 images) and val (2000).

    root: the ADEChallengeData2016 folder (holding images/ and annotations/), or the
    folder it was unpacked into.
    """

    folder = "ADEChallengeData2016"
    classes = CLASSES
    palette = generated_palette(len(CLASSES) + 1)[1:]  # display only; skips black
    lookup = _lookup()

    def __init__(self, root=None, split: str = "train", transforms=None) -> None:
        check_split("ade20k", split, tuple(SPLIT_FOLDERS))
        self.root = descend(self.resolve_root("ade20k", root), "images", ("ADEChallengeData2016",))
        folder = SPLIT_FOLDERS[split]
        samples = pair_files(self.root / "images" / folder, self.root / "annotations" / folder,
                             image_suffixes=(".jpg",))
        super().__init__(samples, split, transforms)
