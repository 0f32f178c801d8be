"""ISBI 2012 EM segmentation challenge: neuronal membranes in 30 serial-section TEM slices.

Download: the challenge page https://imagej.net/events/isbi-2012-segmentation-challenge
(train-volume.tif / train-labels.tif, 30 slices of 512 x 512); this reader takes them
as one PNG per slice, the layout of https://github.com/zhixuhao/unet (data/membrane/train:
image/N.png, label/N.png). To convert the TIFF stacks, save page N of each as N.png.
Cite:
    Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation algorithms
    for connectomics", Frontiers in Neuroanatomy 2015.
    Cardona et al., "An integrated micro- and macroarchitectural analysis of the Drosophila
    brain by computer-assisted serial section electron microscopy", PLoS Biology 2010.

Labels: 0 = membrane -> class 0, 255 = cell interior -> class 1; any other grey
value is an error. Images are grey and come out with the grey repeated over 3 channels.
Only these 30 slices have public labels, so `val` (slices 25..29) is held out:
never train on it when reporting results.
"""
from __future__ import annotations

import numpy as np

from .base import DatasetError, FilePairDataset, check_split, require_file

SPLITS = {"train": range(0, 25), "val": range(25, 30), "all": range(0, 30)}


def _lookup() -> np.ndarray:
    table = np.full(256, -1, dtype=np.int64)
    table[0], table[255] = 0, 1
    return table


class ISBI2012(FilePairDataset):
    """ISBI 2012 membranes: splits train (slices 0..24), val (25..29, held out), all (0..29).

    root: the folder holding image/ and label/.
    """

    folder = "isbi2012"
    classes = ("membrane", "cell")
    palette = ((0, 0, 0), (255, 255, 255))
    lookup = _lookup()

    def __init__(self, root=None, split: str = "train", transforms=None) -> None:
        check_split("isbi", split, tuple(SPLITS))
        self.root = self.resolve_root("isbi", root)
        image_dir, label_dir = self.root / "image", self.root / "label"
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise DatasetError(f"missing folder {folder}")
        for folder, other in ((image_dir, label_dir), (label_dir, image_dir)):
            for path in sorted(folder.glob("*.png")):
                if not (other / path.name).is_file():
                    kind = "image" if folder is image_dir else "label"
                    raise DatasetError(f"{kind} {path} has no {'label' if kind == 'image' else 'image'} "
                                       f"{other / path.name}")
        samples = [(require_file(image_dir / f"{n}.png", "image"), require_file(label_dir / f"{n}.png", "label"))
                   for n in SPLITS[split]]
        super().__init__(samples, split, transforms)
