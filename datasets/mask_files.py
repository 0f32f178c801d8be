"""Reading a mask file of any common format into what it shows: values or colours.

The rule, by PIL mode (documented in datasets/README.md):
- one value per pixel (L, I, I;16): the stored value;
- 1-bit (bilevel GIF, TIFF, BMP): 0 and 255, as a viewer shows them;
- palette (P, GIF and palette PNGs): if every colour used is a grey (r = g = b), the grey
  level shown, because GIF writers renumber the palette (a 0/255 mask saved as GIF is
  stored as indices 0/1 with a black/white palette); otherwise the index, as in
  PASCAL VOC's class-id PNGs, whose palette only colours the ids;
- RGB(A): the grey level when the three channels are equal everywhere, else colours;
- alpha channels are not used.
A JPEG mask is flagged `lossy`: its values are near, not at, the stored ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .base import IMAGE_SUFFIXES, DatasetError

MASK_SUFFIXES = IMAGE_SUFFIXES  # masks come in the same formats as images
LOSSY_FORMATS = ("JPEG", "MPO")  # MPO: a JPEG with extra frames, as some cameras write


@dataclass
class RawMask:
    """A mask as stored: `data` is H x W int64 values, or H x W x 3 uint8 colours."""

    data: np.ndarray
    lossy: bool
    mode: str
    format: str

    @property
    def is_colour(self) -> bool:
        return self.data.ndim == 3

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.data.shape[0], self.data.shape[1]


def read_mask(path: Path, colours: bool = False) -> RawMask:
    """Read `path`; with `colours`, always as H x W x 3 colours (for colour declarations)."""
    try:
        with Image.open(path) as img:
            mode, fmt = img.mode, img.format or path.suffix.lstrip(".").upper()
            data = _colours(img, path) if colours else _values(img, path)
    except DatasetError:
        raise
    except Exception as err:  # PIL raises several types for bad files
        raise DatasetError(f"cannot read label {path}: {err}") from None
    return RawMask(data, fmt in LOSSY_FORMATS, mode, fmt)


def _values(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode == "F":
        raise DatasetError(f"label {path} holds floating-point values (mode F); expected one integer "
                           f"value per pixel or one colour per class")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "L"):
        return np.asarray(img).astype(np.int64)
    if img.mode == "1":
        return np.asarray(img.convert("L")).astype(np.int64)
    if img.mode in ("P", "PA"):
        indices = np.asarray(img.convert("P") if img.mode == "PA" else img).astype(np.int64)
        grey = _grey_palette(img, indices)
        return grey[indices] if grey is not None else indices
    if img.mode == "LA":
        return np.asarray(img.getchannel("L")).astype(np.int64)
    rgb = np.asarray(img.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].astype(np.int64)
    return rgb


def _grey_palette(img: Image.Image, indices: np.ndarray) -> np.ndarray | None:
    """index -> grey level when every used palette entry is a grey, else None."""
    flat = img.getpalette() or []
    table = np.zeros((256, 3), np.int64)
    entries = np.asarray(flat[: 3 * 256], np.int64).reshape(-1, 3)
    table[: len(entries)] = entries
    used = np.unique(indices)
    if used.max(initial=0) >= len(entries):
        return None  # indices beyond the palette: only ids make sense
    chosen = table[used]
    if (chosen[:, 0] == chosen[:, 1]).all() and (chosen[:, 1] == chosen[:, 2]).all():
        return table[:, 0]
    return None


def _colours(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise DatasetError(f"label {path} is a {img.mode} image (more than 8 bits per pixel) but the "
                           f"declaration lists colours; declare its values instead")
    return np.asarray(img.convert("RGB"))


def pack(colours: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 colours as H x W int64 keys r * 65536 + g * 256 + b (one key per colour)."""
    c = colours.astype(np.int64)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def unpack(key: int) -> tuple[int, int, int]:
    return (int(key) >> 16) & 255, (int(key) >> 8) & 255, int(key) & 255


def value_counts(raw: RawMask) -> dict:
    """{value or (r, g, b): pixel count} of one mask."""
    keys = pack(raw.data) if raw.is_colour else raw.data
    found, counts = np.unique(keys, return_counts=True)
    if raw.is_colour:
        return {unpack(k): int(n) for k, n in zip(found, counts)}
    return {int(k): int(n) for k, n in zip(found, counts)}
