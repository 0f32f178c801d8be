"""Folder: your own data, as a folder of images and a folder of masks.

    <root>/images/<stem>.png|jpg|tif|bmp|gif|webp   the images (greyscale and 16-bit: see base.to_rgb8)
    <root>/masks/<stem>.png|gif|tif|bmp|jpg|webp    one mask per image
    <root>/dataset.json                             optional declaration: what the mask values or
                                                    colours mean, folders, name patterns
                                                    (declaration.py, datasets/README.md)
    <root>/<roi>/<roi_name>.*                       optional, declared: regions of interest; pixels
                                                    where they are 0 are ignored (roi.py)
    <root>/classes.txt                              optional, without declared classes: one class
                                                    name per line, in id order
    <root>/splits/<split>.txt                       optional: one image stem per line, any split names

With declared classes, each mask value (or colour) maps to its class; undeclared
values are errors, lossy masks (and, with "snap": true, all) are snapped to the declared
values (mask_encoding.py) and read once when the data set is built (mask_scan.py).
Without, masks hold class ids (255 = ignored) and the number of classes is the lines
of classes.txt, else the `num_classes=` option, else (largest id found, 255 aside) + 1;
every mask is read once when the data set is built, and masks that would be misread
as class ids (only 0 and 255, two values, sparse grey levels, soft edges, colour or
lossy masks, more than 255 classes) stop it with what to declare (suggest.py).
Palette masks are read one way for the whole set: palette indices as soon as one
mask's palette holds a colour, else grey levels (mask_files.py).
Splits: with a splits/ folder, its lists (plus `all`; train, val and test must not share
a stem); without one, `train`, `val`
and `all` by a fixed rule: a stem whose CRC-32 is divisible by 5 goes to val (about
20 %), the rest to train. The rule depends on the stem alone, so adding images never
moves an existing image to the other split, and every machine agrees.
Palette: the declared colours; else the masks' own palette when they are class-id
palette PNGs; else generated.
"""
from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from torchvision import tv_tensors

from ..base import (IGNORE_INDEX, DatasetError, FilePairDataset, check_split, generated_palette, make_mask,
                   read_image, read_split_list)
from .declaration import Declaration, load_declaration
from .mask_encoding import MaskEncoder
from .mask_files import MASK_SUFFIXES, RawMask, palette_reading, read_mask_file
from .mask_scan import scan_headers, snapping_report
from ..pairing import IMAGE_SUFFIXES, match_files, unpaired_error
from .roi import find_region_files, read_region
from .suggest import MaskSummary, Survey, misreading

# (path, modification time, size) -> the mask's value counts: the survey of undeclared masks reads
# every mask when the train and val splits are built; the second build reuses the first's reads.
_SURVEY_CACHE: dict[tuple[str, int, int, str], MaskSummary | None] = {}


def default_split(stem: str) -> str:
    """The split of an image when no split lists exist (see the module docstring)."""
    return "val" if zlib.crc32(stem.encode("utf-8")) % 5 == 0 else "train"


def split_names(root: Path) -> list[str]:
    """The splits of the data set in `root`, `all` aside: its split lists, else train and val."""
    split_dir = root / "splits"
    lists = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
    return lists or ["train", "val"]


def select_split(root: Path, pairs: list[tuple[Path, Path]], split: str, image_dir: Path) -> list[tuple[Path, Path]]:
    """The pairs of `split`: from splits/<split>.txt when there are split lists, else by `default_split`."""
    if split == "all":
        return pairs
    split_dir = root / "splits"
    if split_dir.is_dir() and any(split_dir.glob("*.txt")):
        check_disjoint(split_dir)
        by_stem = {image.stem: (image, mask) for image, mask in pairs}
        stems = read_split_list(split_dir / f"{split}.txt")
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise DatasetError(f"split list {split_dir / f'{split}.txt'} names {missing[0]!r}, "
                               f"which has no image in {image_dir}")
        chosen = [by_stem[s] for s in stems]
    else:
        chosen = [pair for pair in pairs if default_split(pair[0].stem) == split]
    if not chosen:
        raise DatasetError(f"split {split!r} of {root} is empty; write {split_dir / f'{split}.txt'}")
    return chosen


DISJOINT_SPLITS = ("train", "val", "test")  # lists such as trainval may overlap them on purpose


def check_disjoint(split_dir: Path) -> None:
    """A stem in two of the train, val and test lists would be trained on and scored: an error."""
    lists = {name: set(read_split_list(split_dir / f"{name}.txt")) for name in DISJOINT_SPLITS
             if (split_dir / f"{name}.txt").is_file()}
    names = list(lists)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            shared = sorted(lists[first] & lists[second])
            if shared:
                shown = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
                raise DatasetError(f"{len(shared)} stem(s) are listed in both {split_dir / f'{first}.txt'} and "
                                   f"{split_dir / f'{second}.txt'}: {shown}. A sample in both would be trained on "
                                   f"and scored; keep each stem in one list")


class Folder(FilePairDataset):
    """A generic data set: images + masks (+ dataset.json, classes.txt, splits/); see the module docstring.

    Keyword options other than `num_classes` are declaration keys (`classes`, `ignore`,
    `images`, `masks`, `image_name`, `mask_name`, `roi`, `roi_name`, `resize_masks`, `snap_distance`,
    `max_far_fraction`); they replace the keys of the same name in `<root>/dataset.json`.
    """

    folder = "folder"

    def __init__(self, root=None, split: str = "train", transforms: Callable | None = None, *,
                 num_classes: int | None = None, **declaration: Any) -> None:
        self.root = self.resolve_root("folder", root)
        self.declaration: Declaration = load_declaration(self.root, declaration)
        d = self.declaration
        check_split("folder", split, split_names(self.root) + ["all"])
        image_dir, mask_dir = self.root / d.images, self.root / d.masks
        matching = match_files(image_dir, mask_dir, d.image_name, d.mask_name, IMAGE_SUFFIXES, MASK_SUFFIXES)
        error = unpaired_error(matching, image_dir, mask_dir, d.image_name, d.mask_name)
        if error is not None:
            raise error
        if not matching.pairs:
            raise DatasetError(f"no images in {image_dir}")
        pairs = matching.pairs
        pairs_in_split = select_split(self.root, pairs, split, image_dir)
        headers = scan_headers([mask for _, mask in pairs])
        self.palette_reading = palette_reading(headers)  # one reading for every palette mask of the set
        self.encoder = MaskEncoder(d) if d.declares_classes else None
        if self.encoder is not None:
            if num_classes is not None and num_classes != len(d.classes):
                raise ValueError(f"num_classes={num_classes} but the declaration ({d.source}) lists "
                                 f"{len(d.classes)} classes")
            self.classes = d.classes
            self.palette = d.values if d.by_colour else generated_palette(len(d.classes))
        else:
            self.classes, self.palette = self._metadata(pairs, num_classes, mask_dir)
        super().__init__(pairs_in_split, split, transforms)
        self.regions = (find_region_files([image for image, _ in self.samples], d.image_name,
                                          self.root / d.roi, d.roi_name) if d.roi else {})
        if self.encoder is not None:
            in_split = {mask for _, mask in pairs_in_split}
            chosen = [(mask, h) for (_, mask), h in zip(pairs, headers) if mask in in_split]
            note = snapping_report([m for m, _ in chosen], [h for _, h in chosen], self.encoder, self.read_raw, split)
            if note:
                print(note, file=sys.stderr)
        self.far_pixels = 0  # lossy masks: pixels far from every declared value, summed over loads
        self.resized_masks = self._report_resized() if d.resize_masks else []

    # ------------------------------------------------------------------ reading

    def read_raw(self, path: Path) -> RawMask:
        return read_mask_file(path, colours=self.encoder is not None and self.encoder.colour,
                         palette=self.palette_reading)

    def read_ids(self, path: Path) -> np.ndarray:
        """Class ids (or, undeclared, the stored ids) of one mask file; used by load() and read_mask()."""
        return self._ids(path, self.read_raw(path))

    def _ids(self, path: Path, raw: RawMask) -> np.ndarray:
        if self.encoder is not None:
            encoded = self.encoder.encode(raw, path)
            self.far_pixels += encoded.far_pixels
            return encoded.ids
        if raw.is_colour:  # the build-time survey stops this; a file changed since would get here
            raise DatasetError(f"label {path} is a colour image; declare each class's colour "
                               f"(see datasets/README.md, `folder`)")
        return raw.data

    def decode_mask(self, index: int, image_size: tuple[int, int] | None = None) -> tv_tensors.Mask:
        """The class ids of sample `index`'s mask; with `image_size` (height, width), a mask of another
        size is resized to it (resize_masks) or an error."""
        image_path, mask_path = self.samples[index]
        ids = self.read_ids(mask_path)
        if image_size is not None and ids.shape != image_size and self.declaration.resize_masks:
            ids = resize_nearest(ids, image_size)
        if self.regions:
            inside = region_of(self.regions[image_path], ids.shape, self.declaration.resize_masks, mask_path)
            ids = np.where(inside, ids, IGNORE_INDEX)
        return make_mask(ids, mask_path, self.num_classes, None, image_size)

    def read_mask(self, index: int) -> tv_tensors.Mask:
        """The mask as `load` yields it, without decoding the image (resize_masks reads its size
        from the file header)."""
        size = header_size(self.samples[index][0]) if self.declaration.resize_masks else None
        return self.decode_mask(index, size)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image = read_image(self.samples[index][0])
        return image, self.decode_mask(index, tuple(image.shape[-2:]))

    def verify(self) -> None:
        """Read every pair once; then say how many masks were resized and how many pixels snapped from far."""
        self.far_pixels = 0
        super().verify()
        notes = []
        if self.resized_masks:
            notes.append(f"{len(self.resized_masks)} mask(s) resized to their image")
        if self.far_pixels:
            notes.append(f"{self.far_pixels} pixel(s) of lossy masks snapped from farther than "
                         f"{self.declaration.snap_distance} levels")
        if notes:
            print(f"folder {self.split}: {'; '.join(notes)}", file=sys.stderr)

    # ------------------------------------------------------------------ metadata

    def _metadata(self, pairs, num_classes, mask_dir: Path):
        names_file = self.root / "classes.txt"
        names = None
        if names_file.is_file():
            names = tuple(line.strip() for line in names_file.read_text().splitlines() if line.strip())
            if num_classes is not None and num_classes != len(names):
                raise ValueError(f"num_classes={num_classes} but {names_file} lists {len(names)} classes")
            num_classes = len(names)
        survey = survey_masks([mask for _, mask in pairs], self.palette_reading)
        problem = misreading(survey, num_classes, self.root)
        if problem:
            raise DatasetError(problem)
        if num_classes is None:
            # Inferred from every mask (all splits), so that train and val agree.
            ids = [v for v in survey.counts if v != self.ignore_index]
            num_classes = max(ids) + 1 if ids else 0
            if num_classes < 1:
                raise DatasetError(f"cannot infer the number of classes: every mask in {mask_dir} is empty "
                                   f"or ignored; pass num_classes=")
        names = names or tuple(f"class_{i}" for i in range(num_classes))
        return names, self._palette(pairs[0][1], len(names))

    @staticmethod
    def _palette(mask: Path, n: int) -> tuple[tuple[int, int, int], ...]:
        """The colours of a class-id palette PNG, else generated ones."""
        try:
            with Image.open(mask) as img:
                flat = img.getpalette() if img.mode == "P" else None
        except Exception:
            flat = None  # an unreadable mask is reported when it is loaded
        if flat and len(flat) >= 3 * n:
            colours = tuple(tuple(flat[3 * i: 3 * i + 3]) for i in range(n))
            if any(len(set(c)) > 1 for c in colours):  # a grey palette only shows values, not classes
                return colours
        return generated_palette(n)

    def _report_resized(self) -> list[Path]:
        """Masks of this split whose size differs from their image's (read from file headers only)."""
        resized = []
        for image_path, mask_path in self.samples:
            try:
                with Image.open(image_path) as image, Image.open(mask_path) as mask:
                    if image.size != mask.size:
                        resized.append(mask_path)
            except Exception:
                continue  # unreadable files are reported when loaded
        if resized:
            print(f"folder {self.split}: {len(resized)} of {len(self.samples)} masks differ in size from their "
                  f"image and are resized to it with nearest neighbour (resize_masks), e.g. {resized[0]}",
                  file=sys.stderr)
        return resized


def header_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (the size `read_image` gives)."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except Exception as err:  # PIL raises several types for bad files
        raise DatasetError(f"cannot read image {path}: {err}") from None


def resize_nearest(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class ids resized to (height, width) with nearest neighbour: no new ids appear (32-bit,
    so that values above 255 do not wrap around)."""
    image = Image.fromarray(ids.astype(np.int32))
    return np.asarray(image.resize((size[1], size[0]), Image.NEAREST)).astype(np.int64)


def region_of(path: Path, shape: tuple[int, int], resize: bool, label_path: Path) -> np.ndarray:
    """The region of interest in `path` (True inside; roi.read_region) for the label in `label_path`
    of `shape` (height, width): resized to it (nearest neighbour) when `resize` (the declaration's
    resize_masks), else a size that differs is an error naming both files."""
    inside = read_region(path)
    if inside.shape != tuple(shape):
        if not resize:
            raise DatasetError(f"region-of-interest mask {path} is {inside.shape[1]}x{inside.shape[0]} but "
                               f"label {label_path} is {shape[1]}x{shape[0]} (width x height)")
        inside = resize_nearest(inside.astype(np.int64), tuple(shape)).astype(bool)
    return inside


def survey_masks(paths: list[Path], palette: str = "auto") -> Survey:
    """The values of every undeclared mask (read once per file version; unreadable ones skipped,
    since loading them reports the error with the file's name); `palette`: the set's reading
    of palette masks (mask_files.read_mask_file)."""
    survey = Survey()
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        key = (str(path), stat.st_mtime_ns, stat.st_size, palette)
        if key not in _SURVEY_CACHE:
            try:
                _SURVEY_CACHE[key] = MaskSummary.of(read_mask_file(path, palette=palette))
            except DatasetError:
                _SURVEY_CACHE[key] = None
        summary = _SURVEY_CACHE[key]
        if summary is not None:
            survey.add(path, summary)
    return survey
