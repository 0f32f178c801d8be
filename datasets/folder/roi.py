"""Regions of interest: a mask per image of the pixels that count (DRIVE's field-of-view masks,
scanner borders, no-data areas of satellite tiles).

Declared with the folder data set's keys `"roi"` (a folder, relative to the root) and
`"roi_name"` (a file name without extension holding `{id}`, as `image_name`). A pixel where
the region mask is 0 is outside: its label becomes 255 (ignored in loss and metrics); any other
value is inside. A lossy (JPEG) region mask is read as inside from 128 up, since its zeros
come back as small non-zero values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import DatasetError
from .mask_files import MASK_SUFFIXES, read_mask_file
from ..pairing import pattern_regex


def find_region_files(images: list[Path], image_name: str, roi_dir: Path, roi_name: str) -> dict[Path, Path]:
    """The region mask of every image, found by the `{id}` its name shares with the image's.

    A missing folder or file is an error naming the path looked for.
    """
    if not roi_dir.is_dir():
        raise DatasetError(f"missing region-of-interest folder {roi_dir} (the declaration's \"roi\")")
    by_stem: dict[str, Path] = {}
    for path in roi_dir.iterdir():
        if path.is_file() and path.suffix.lower() in MASK_SUFFIXES:
            by_stem.setdefault(path.stem, path)
    image_re = pattern_regex(image_name)
    found = {}
    for image in images:
        match = image_re.fullmatch(image.stem)
        key = match.group("id") if match else image.stem
        stem = roi_name.replace("{id}", key)
        if stem not in by_stem:
            raise DatasetError(f"image {image} has no region-of-interest mask: expected {roi_dir / stem}"
                               f" with one of the suffixes {', '.join(MASK_SUFFIXES)}")
        found[image] = by_stem[stem]
    return found


def read_region(path: Path) -> np.ndarray:
    """The region mask in `path` as a boolean array, True inside."""
    raw = read_mask_file(path)
    data = raw.data.max(axis=2) if raw.is_colour else raw.data
    return data >= 128 if raw.lossy else data != 0

