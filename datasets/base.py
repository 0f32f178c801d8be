"""What every data set shares: metadata, (image, mask) loading, checks on bad data.

A data set yields `(image, mask)`: before transforms, a `tv_tensors.Image`
(uint8, 3 x H x W) and a `tv_tensors.Mask` (int64, H x W) whose values are
class ids in [0, num_classes) or `ignore_index` (255 everywhere: each data set
maps its own "void" ids to 255).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

import config

IGNORE_INDEX = 255


class DatasetError(RuntimeError):
    """Bad or missing data; the message names the file or folder."""


class SegmentationDataset(Dataset):
    """Base class. Subclasses set `classes`, `palette` and `folder` and implement `load`
    (and `read_mask` where the mask can be read without the image)."""

    classes: Sequence[str] = ()
    palette: Sequence[tuple[int, int, int]] = ()
    ignore_index: int = IGNORE_INDEX
    folder: str | None = None
    """The data set's default folder, relative to SEG_DATA (`config.data_dir()`): where it is
    looked for when no `root` is given. The name its official download unpacks to, so that
    users unpack every data set into SEG_DATA and nothing else; "." is SEG_DATA itself.
    None for a data set without files (generated)."""

    def __init__(self, split: str, transforms: Callable | None = None) -> None:
        self.split = split
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        raise NotImplementedError

    def sample_name(self, index: int) -> str:
        """A file-name-safe identifier of sample `index` (predictions are saved under it)."""
        return f"{index:06d}"

    def read_mask(self, index: int) -> tv_tensors.Mask:
        """The mask of sample `index` exactly as `load` (and `__getitem__` without transforms)
        yields it: int64 H x W class ids, `ignore_index` where there is no valid class.
        Subclasses override it to skip reading the image (class weights read every mask)."""
        return self.load(index)[1]

    @classmethod
    def resolve_root(cls, name: str, root: str | os.PathLike | None) -> Path:
        """The data set's folder: `root` if given, else SEG_DATA/`folder`; must exist.

        `name` is the data set's registry name, used in the error message."""
        if root is None and cls.folder is None:
            raise ValueError(f"{name} has no default folder (its class sets no `folder`); pass root=")
        path = Path(root).expanduser() if root is not None else config.data_dir() / cls.folder
        if not path.is_dir():
            given = "the root passed in (--data-root / root=)" if root is not None else "the default root"
            raise DatasetError(
                f"{name} data not found: {path} ({given}) is not a folder. Download it (see "
                f"datasets/README.md), then set the environment variable SEG_DATA to the folder holding "
                f"every data set (this one is expected in SEG_DATA/{cls.folder}) "
                f"or pass --data-root DIR."
            )
        return path

    def __getitem__(self, index: int):
        image, mask = self.load(index)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask

    def verify(self) -> None:
        """Load every sample once, so that bad files show up before training does."""
        for index in range(len(self)):
            self.load(index)


# PIL modes with more than 8 bits per pixel: PIL's own convert("RGB") clips them at 255.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_rgb8(img: Image.Image) -> np.ndarray:
    """An H x W x 3 uint8 array from any PIL image, by one documented rule.

    8-bit images (RGB, RGBA, grey, palette, 1-bit, CMYK...) go through PIL's convert("RGB"):
    grey is copied to the three channels, alpha is dropped. 16-bit, 32-bit and float images
    (microscopy, medical) are stretched linearly from the image's own minimum..maximum to
    0..255, because many use 10 to 12 of their 16 bits and a fixed shift would leave them
    nearly black; a constant image becomes 0. Multi-page files (TIFF, GIF) give their first page.
    """
    if img.mode in WIDE_MODES:
        values = np.asarray(img, dtype=np.float64)
        # The image's own range (min(initial=0) would stretch from 0: 1000..4000 to 64..255).
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


# The image formats every data set and predict.py read (also re-exported by datasets.pairing).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


def read_image(path: Path) -> tv_tensors.Image:
    """An image file as uint8 3 x H x W (see `to_rgb8` for greyscale and 16-bit files)."""
    try:
        with Image.open(path) as img:
            array = to_rgb8(img)
    except Exception as err:  # PIL raises several types for bad files
        raise DatasetError(f"cannot read image {path}: {err}") from None
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))


def read_label_png(path: Path) -> np.ndarray:
    """Raw values of a label PNG: class ids of a grey or palette ('P') image."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise DatasetError(f"label {path} has mode {img.mode}; expected one id per pixel (L or P)")
            return np.asarray(img).astype(np.int64)
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(f"cannot read label {path}: {err}") from None


def make_mask(ids: np.ndarray, path: Path, num_classes: int, lookup: np.ndarray | None = None,
              image_size: tuple[int, int] | None = None) -> tv_tensors.Mask:
    """Map raw ids through `lookup` (raw id -> class id or 255), then check size and range.

    A negative entry in `lookup` marks a raw id that the data set does not define:
    finding one is an error that names the raw id and the file.
    """
    if image_size is not None and tuple(ids.shape) != tuple(image_size):
        raise DatasetError(f"label {path} is {ids.shape[1]}x{ids.shape[0]} but its image is "
                           f"{image_size[1]}x{image_size[0]} (width x height)")
    if lookup is not None:
        if ids.size and (ids.min() < 0 or ids.max() >= len(lookup)):
            value = int(ids.max()) if ids.max() >= len(lookup) else int(ids.min())
            raise DatasetError(f"label {path} holds id {value}, outside the known ids 0..{len(lookup) - 1}")
        mapped = lookup[ids]
        unknown = mapped < 0
        if unknown.any():
            raise DatasetError(f"label {path} holds id {int(ids[unknown][0])}, which this data set does not define")
        ids = mapped
    bad = (ids >= num_classes) & (ids != IGNORE_INDEX)
    if bad.any() or (ids < 0).any():
        value = int(ids[bad][0]) if bad.any() else int(ids.min())
        raise DatasetError(f"label {path} holds id {value}; expected 0..{num_classes - 1} or {IGNORE_INDEX} (ignored)")
    return tv_tensors.Mask(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)))


def check_split(name: str, split: str, valid: Sequence[str]) -> None:
    """Unknown split names fail at once, listing the valid ones."""
    if split not in valid:
        raise ValueError(f"unknown {name} split {split!r}; choose one of: {', '.join(valid)}")


def descend(root: Path, marker: str, wrappers: Sequence[str]) -> Path:
    """`root` itself if it holds `marker`, else the first wrapper folder below it that does.

    Lets users pass either the data set folder or the folder its archive unpacked into
    (for example the folder holding VOCdevkit/ instead of VOCdevkit/VOC2012).
    """
    if (root / marker).exists():
        return root
    for wrapper in wrappers:
        if (root / wrapper / marker).exists():
            return root / wrapper
    return root


def generated_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """n distinct display colours by the PASCAL VOC bit-interleaving rule (class 0 is black)."""
    colours = []
    for index in range(n):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"missing {what} {path}")
    return path


class FilePairDataset(SegmentationDataset):
    """A data set stored as (image file, label file) pairs.

    Subclasses fill `self.samples` and may set `self.lookup`, a table mapping
    each raw label id to a class id or 255.
    """

    lookup: np.ndarray | None = None

    def __init__(self, samples: list[tuple[Path, Path | None]], split: str,
                 transforms: Callable | None = None) -> None:
        super().__init__(split, transforms)
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def sample_name(self, index: int) -> str:
        return self.samples[index][0].stem

    def read_ids(self, path: Path) -> np.ndarray:
        """Raw label ids of one label file; override for other formats (.mat, ...)."""
        return read_label_png(path)

    @property
    def has_labels(self) -> bool:
        """False for splits whose labels are withheld (Cityscapes test): predict only."""
        return all(label is not None for _, label in self.samples)

    def load_image(self, index: int) -> tv_tensors.Image:
        """The image of sample `index` alone (works on unlabelled splits; used by predict.py)."""
        return read_image(self.samples[index][0])

    def label_path(self, index: int) -> Path:
        """The label file of sample `index`; an error on splits whose labels are withheld."""
        image_path, label_path = self.samples[index]
        if label_path is None:
            raise DatasetError(f"{image_path} has no label in split {self.split!r}: this split is only "
                               f"usable for prediction (predict.py, or dataset.load_image(index))")
        return label_path

    def decode_mask(self, index: int, image_size: tuple[int, int] | None = None) -> tv_tensors.Mask:
        """The mask of sample `index` from its label file (`read_ids`, then `lookup` and the range
        check of `make_mask`); with `image_size` (height, width), its size is checked too."""
        label_path = self.label_path(index)
        return make_mask(self.read_ids(label_path), label_path, self.num_classes, self.lookup, image_size)

    def read_mask(self, index: int) -> tv_tensors.Mask:
        """The mask of sample `index` as `load` yields it, without reading the image."""
        return self.decode_mask(index)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        self.label_path(index)  # an unlabelled split fails before the image is read
        image = read_image(self.samples[index][0])
        return image, self.decode_mask(index, tuple(image.shape[-2:]))

    def verify(self) -> None:
        """Read every file once (images only on unlabelled splits), so bad files show up before training."""
        for index, (_, label_path) in enumerate(self.samples):
            if label_path is None:
                self.load_image(index)
            else:
                self.load(index)


def read_split_list(path: Path) -> list[str]:
    """One sample id per line (VOC ImageSets style); blank lines ignored."""
    if not path.is_file():
        raise DatasetError(f"missing split list {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
