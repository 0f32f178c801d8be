"""Folder: your own data, as images/ and masks/ with matching file stems.

    <root>/images/<stem>.jpg|.png|...   any format PIL reads
    <root>/masks/<stem>.png             class ids per pixel: a greyscale (L) PNG or a
                                        palette (P) PNG whose indices are the class ids;
                                        255 = ignored
    <root>/classes.txt                  optional: one class name per line, in id order
    <root>/splits/<split>.txt           optional: one stem per line, any split names

Number of classes: the lines of classes.txt, else the `num_classes=` option, else
inferred as (largest id found in masks/, 255 aside) + 1 by reading every mask once.
Splits: with a splits/ folder, its lists (plus `all`); without one, `train`, `val`
and `all` by a fixed rule: a stem whose CRC-32 is divisible by 5 goes to val (about
20 %), the rest to train. The rule depends on the stem alone, so adding images never
moves an existing image to the other split, and every machine agrees.
Palette: the masks' own palette when they are palette PNGs, else generated.
"""
from __future__ import annotations

import zlib
from pathlib import Path

from PIL import Image

from .base import (DatasetError, FilePairDataset, check_split, generated_palette, pair_by_stem,
                   read_label_png, read_split_list, resolve_root)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def default_split(stem: str) -> str:
    """The split of an image when no split lists exist (see the module docstring)."""
    return "val" if zlib.crc32(stem.encode("utf-8")) % 5 == 0 else "train"


class Folder(FilePairDataset):
    """A generic data set: images/ + masks/ (+ classes.txt, splits/); see the module docstring."""

    def __init__(self, root=None, split: str = "train", transforms=None, *,
                 num_classes: int | None = None) -> None:
        self.root = resolve_root("folder", root)
        split_dir = self.root / "splits"
        lists = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
        check_split("folder", split, (lists or ["train", "val"]) + ["all"])
        pairs = pair_by_stem(self.root / "images", self.root / "masks", image_suffixes=IMAGE_SUFFIXES)
        if split != "all":
            if lists:
                by_stem = {image.stem: (image, mask) for image, mask in pairs}
                stems = read_split_list(split_dir / f"{split}.txt")
                missing = [s for s in stems if s not in by_stem]
                if missing:
                    raise DatasetError(f"split list {split_dir / f'{split}.txt'} names {missing[0]!r}, "
                                       f"which has no image in {self.root / 'images'}")
                pairs_in_split = [by_stem[s] for s in stems]
            else:
                pairs_in_split = [pair for pair in pairs if default_split(pair[0].stem) == split]
            if not pairs_in_split:
                raise DatasetError(f"split {split!r} of {self.root} is empty; write {split_dir / f'{split}.txt'}")
        else:
            pairs_in_split = pairs
        self.classes, self.palette = self._metadata(pairs, num_classes)
        super().__init__(pairs_in_split, split, transforms)

    def _metadata(self, pairs, num_classes):
        names_file = self.root / "classes.txt"
        if names_file.is_file():
            names = tuple(line.strip() for line in names_file.read_text().splitlines() if line.strip())
            if num_classes is not None and num_classes != len(names):
                raise ValueError(f"num_classes={num_classes} but {names_file} lists {len(names)} classes")
        else:
            if num_classes is None:
                # Inferred from every mask (all splits), so that train and val agree.
                largest = -1
                for _, mask in pairs:
                    ids = read_label_png(mask)
                    ids = ids[ids != self.ignore_index]
                    largest = max(largest, int(ids.max()) if ids.size else -1)
                num_classes = largest + 1
                if num_classes < 1:
                    raise DatasetError(f"cannot infer the number of classes: every mask in "
                                       f"{self.root / 'masks'} is empty or ignored; pass num_classes=")
            names = tuple(f"class_{i}" for i in range(num_classes))
        return names, self._palette(pairs[0][1], len(names))

    @staticmethod
    def _palette(mask: Path, n: int) -> tuple[tuple[int, int, int], ...]:
        try:
            with Image.open(mask) as img:
                flat = img.getpalette() if img.mode == "P" else None
        except Exception:
            flat = None  # an unreadable mask is reported when it is loaded
        if flat and len(flat) >= 3 * n:
            return tuple(tuple(flat[3 * i: 3 * i + 3]) for i in range(n))
        return generated_palette(n)
