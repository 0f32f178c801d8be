"""Pairing image files with mask files by name patterns, any extension on either side.

A pattern is a file name without extension holding `{id}` once: `{id}` (the same
stem), `{id}_mask`, `{id}_segmentation`, `{id}_manual1`... An image and a mask pair
up when the parts standing for `{id}` are equal. `match_files` collects every unpaired
file, so that `tools/inspect_data.py` can count them; `pair_files` is the pairing of the
data sets with a fixed layout (CamVid, ADE20K, Cityscapes), where an unpaired file is an error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .base import IMAGE_SUFFIXES, DatasetError  # IMAGE_SUFFIXES: the one list, defined next to read_image


@dataclass
class Matching:
    pairs: list[tuple[Path, Path]] = field(default_factory=list)  # sorted by image name
    unpaired_images: list[Path] = field(default_factory=list)
    unpaired_masks: list[Path] = field(default_factory=list)


def pattern_regex(pattern: str) -> re.Pattern:
    before, after = pattern.split("{id}")
    return re.compile(re.escape(before) + "(?P<id>.+)" + re.escape(after))


def match_files(image_dir: Path, mask_dir: Path, image_name: str = "{id}", mask_name: str = "{id}",
                image_suffixes=IMAGE_SUFFIXES, mask_suffixes=IMAGE_SUFFIXES, strict: bool = True) -> Matching:
    """Pair the files of `image_dir` and `mask_dir` (which may be the same folder). With `strict`,
    files of separate folders whose names fit no pattern count as unpaired; without, they are
    left out (Cityscapes keeps colour and instance images beside its label ids)."""
    for folder, what in ((image_dir, "image"), (mask_dir, "mask")):
        if not folder.is_dir():
            raise DatasetError(f"missing {what} folder {folder}")
    mask_re, image_re = pattern_regex(mask_name), pattern_regex(image_name)
    masks = _by_id(mask_dir, mask_re, mask_suffixes, "masks")
    taken = {path for path in masks.values()}
    images = _by_id(image_dir, image_re, image_suffixes, "images", skip=taken)
    result = Matching()
    for key, image in sorted(images.items(), key=lambda kv: kv[1].name):
        if key in masks:
            result.pairs.append((image, masks[key]))
        else:
            result.unpaired_images.append(image)
    result.unpaired_masks = sorted(path for key, path in masks.items() if key not in images)
    # Files in the image folder that fit no pattern are unpaired images too (when the
    # folders differ: in a shared folder they may be anything else, such as a README).
    if strict and image_dir != mask_dir:
        result.unpaired_images += sorted(p for p in _files(image_dir, image_suffixes) if not image_re.fullmatch(p.stem))
        result.unpaired_masks += sorted(p for p in _files(mask_dir, mask_suffixes) if not mask_re.fullmatch(p.stem))
    return result


def _files(folder: Path, suffixes) -> list[Path]:
    return [p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]


def _by_id(folder: Path, regex: re.Pattern, suffixes, what: str, skip=frozenset()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in _files(folder, suffixes):
        match = regex.fullmatch(path.stem)
        if path in skip or not match:
            continue
        key = match.group("id")
        if key in found:
            raise DatasetError(f"two {what} for one name: {found[key]} and {path}; keep one of them")
        found[key] = path
    return found


def unpaired_error(matching: Matching, image_dir: Path, mask_dir: Path, image_name: str = "{id}",
                   mask_name: str = "{id}", mask_suffixes: Sequence[str] = (".png", ".gif", ".tif", ".bmp", ".jpg"),
                   ) -> DatasetError | None:
    """The error for the first unpaired file, naming where its partner was expected; None if all pair."""
    if matching.unpaired_images:
        image = matching.unpaired_images[0]
        match = pattern_regex(image_name).fullmatch(image.stem)
        if match is None:
            return DatasetError(f"image {image} does not fit the image_name pattern {image_name!r} (its "
                                f"name without extension should read {image_name.replace('{id}', '<id>')}); "
                                f"{len(matching.unpaired_images)} image(s) unpaired")
        expected = mask_name.replace("{id}", match.group("id"))
        endings = ", ".join(mask_suffixes[:-1]) + " or " + mask_suffixes[-1] if len(mask_suffixes) > 1 \
            else mask_suffixes[0]
        return DatasetError(f"image {image} has no mask in {mask_dir} (expected {expected}{endings}; "
                            f"{len(matching.unpaired_images)} image(s) unpaired)")
    if matching.unpaired_masks:
        return DatasetError(f"mask {matching.unpaired_masks[0]} has no image in {image_dir} "
                            f"({len(matching.unpaired_masks)} mask(s) unpaired)")
    return None



def pair_files(image_dir: Path, mask_dir: Path, image_name: str = "{id}", mask_name: str = "{id}",
               image_suffixes: Sequence[str] = IMAGE_SUFFIXES, mask_suffixes: Sequence[str] = (".png",),
               ) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of two folders, sorted by image name; an image without its mask or a
    mask without its image is an error naming the file, and so is a folder without images. Files
    whose names fit neither pattern are left out."""
    matching = match_files(image_dir, mask_dir, image_name, mask_name, image_suffixes, mask_suffixes, strict=False)
    error = unpaired_error(matching, image_dir, mask_dir, image_name, mask_name, mask_suffixes)
    if error is not None:
        raise error
    if not matching.pairs:
        raise DatasetError(f"no images in {image_dir}")
    return matching.pairs
