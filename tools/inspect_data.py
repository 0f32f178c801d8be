"""Report on a folder data set before training on it: pairs, sizes, mask values, classes, what to declare.

    python tools/inspect_data.py data/my_data
    python tools/inspect_data.py data/drive --dataset-kwargs '{"images": "training/images",
        "masks": "training/1st_manual", "image_name": "{id}_training", "mask_name": "{id}_manual1"}'

Reads every image and mask once (with a progress bar) under the declaration the
`folder` data set would use (<root>/dataset.json, overridden by --dataset-kwargs) and
prints: the number of pairs and unpaired files; image sizes (min / median / max) and
modes; mask formats; the mask values or colours found with their share of the pixels;
with regions of interest declared ("roi"), the share of label pixels outside them; with
classes known, the share of each class per split (pixels outside the regions count as
ignored); and every problem the data set
would stop on (unreadable files, sizes that differ, undeclared values, masks that would
be misread), with what to declare. Exit status 0 when the data set would load as
declared, 1 when it would not, 2 for bad arguments.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.base import IGNORE_INDEX, DatasetError
from datasets.folder import select_split, split_names
from datasets.folder.declaration import as_json, load_declaration, show_value
from datasets.folder.mask_encoding import MaskEncoder
from datasets.folder.mask_files import MASK_SUFFIXES, palette_reading, read_mask_file
from datasets.folder.mask_scan import scan_headers
from datasets.folder.suggest import MaskSummary, Survey, misreading
from datasets.folder.dataset import region_of
from datasets.folder.roi import find_region_files
from datasets.pairing import IMAGE_SUFFIXES, match_files

SHOWN_VALUES = 12  # values or colours listed one by one; the rest are summed on one line
SHOWN_FILES = 3


@dataclass
class Report:
    root: Path
    source: str
    pairs: int = 0
    unpaired_images: list = field(default_factory=list)
    unpaired_masks: list = field(default_factory=list)
    widths: list = field(default_factory=list)
    heights: list = field(default_factory=list)
    image_modes: Counter = field(default_factory=Counter)
    mask_formats: Counter = field(default_factory=Counter)
    mask_modes: Counter = field(default_factory=Counter)
    survey: Survey = field(default_factory=Survey)
    mismatched: list = field(default_factory=list)  # (mask, mask W x H, image W x H)
    resize_masks: bool = False
    classes: tuple = ()
    split_counts: dict = field(default_factory=dict)  # split -> Counter(class id -> pixels)
    split_sizes: dict = field(default_factory=dict)  # split -> pairs
    far_pixels: int = 0
    lossy_masks: int = 0
    lossy_encodings: Counter = field(default_factory=Counter)
    regions: str = ""  # the declared region-of-interest files, "" without
    region_masks: int = 0
    region_pixels: int = 0
    outside_pixels: int = 0  # label pixels outside the regions: ignored
    problems: list = field(default_factory=list)
    advice: str = ""


def inspect(root: Path, options: dict, progress: bool = True) -> Report:
    """Read every file of the folder data set in `root` once and collect the report's figures."""
    declaration = load_declaration(root, options)
    report = Report(root, declaration.source, resize_masks=declaration.resize_masks)
    image_dir, mask_dir = root / declaration.images, root / declaration.masks
    matching = match_files(image_dir, mask_dir, declaration.image_name, declaration.mask_name,
                           IMAGE_SUFFIXES, MASK_SUFFIXES)
    report.pairs = len(matching.pairs)
    report.unpaired_images, report.unpaired_masks = matching.unpaired_images, matching.unpaired_masks
    for files, what, folder in ((matching.unpaired_images, "image(s) without a mask", mask_dir),
                                (matching.unpaired_masks, "mask(s) without an image", image_dir)):
        if files:
            report.problems.append(f"{len(files)} {what} (partners looked for in {folder}): "
                                   f"{', '.join(p.name for p in files[:SHOWN_FILES])}")
    splits = _split_members(root, matching.pairs, image_dir, report)
    encoder = MaskEncoder(declaration) if declaration.declares_classes else None
    palette = palette_reading(scan_headers([mask for _, mask in matching.pairs]))  # as the data set reads them
    regions = _find_regions(root, declaration, matching.pairs, report)
    per_mask: dict = {}  # mask -> Counter(class id or raw value -> pixels), pixels outside the regions ignored
    for image_path, mask_path in tqdm(matching.pairs, desc="reading", unit="pair", disable=not progress):
        image_size = _read_image(image_path, report)
        try:
            raw = read_mask_file(mask_path, colours=encoder is not None and encoder.colour, palette=palette)
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        report.mask_formats[raw.format] += 1
        report.mask_modes[raw.mode] += 1
        summary = MaskSummary.of(raw)
        report.survey.add(mask_path, summary)
        report.lossy_masks += raw.lossy
        if raw.lossy:
            report.lossy_encodings[raw.format] += 1
        if image_size is not None and raw.size != image_size:
            report.mismatched.append((mask_path, raw.size[::-1], image_size[::-1]))
        inside = _region(regions.get(image_path), mask_path, raw.size, declaration.resize_masks, report)
        if encoder is None:
            per_mask[mask_path] = Counter(summary.counts) if inside is None or raw.is_colour else \
                _value_counts(np.where(inside, raw.data, IGNORE_INDEX))
            continue
        try:
            encoded = encoder.encode(raw, mask_path)
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        report.far_pixels += encoded.far_pixels
        per_mask[mask_path] = _value_counts(encoded.ids if inside is None else np.where(inside, encoded.ids,
                                                                                         IGNORE_INDEX))
    if report.mismatched and not declaration.resize_masks:
        mask, mask_size, image_size = report.mismatched[0]
        report.problems.append(
            f"{len(report.mismatched)} mask(s) differ in size from their image, e.g. {mask} is "
            f"{mask_size[0]}x{mask_size[1]} but its image is {image_size[0]}x{image_size[1]}; fix them, or "
            f"declare \"resize_masks\": true to resize each mask to its image (nearest neighbour)")
    report.classes = _classes(root, declaration, report)
    if report.classes:
        for split, masks in splits.items():
            total = Counter()
            for mask in masks:
                total.update(per_mask.get(mask, {}))
            report.split_counts[split] = total
            report.split_sizes[split] = len(masks)
    return report


def _find_regions(root: Path, declaration, pairs, report: Report) -> dict:
    """{image: its region-of-interest mask} when the declaration names regions ("roi"), else {}."""
    if not declaration.roi:
        return {}
    report.regions = f"{declaration.roi}/{declaration.roi_name}"
    try:
        return find_region_files([image for image, _ in pairs], declaration.image_name, root / declaration.roi,
                                 declaration.roi_name)
    except DatasetError as err:
        report.problems.append(str(err))
        return {}


def _region(path: Path | None, mask_path: Path, size: tuple, resize: bool, report: Report):
    """The region mask (True inside) of one label of `size` (height, width), counted into the
    report; None without a region or when it cannot be used (a problem is reported)."""
    if path is None:
        return None
    try:
        inside = region_of(path, size, resize, mask_path)
    except DatasetError as err:
        report.problems.append(str(err))
        return None
    report.region_masks += 1
    report.region_pixels += inside.size
    report.outside_pixels += int(inside.size - inside.sum())
    return inside


def _value_counts(values: np.ndarray) -> Counter:
    found, counts = np.unique(values, return_counts=True)
    return Counter({int(k): int(n) for k, n in zip(found, counts)})


def _read_image(path: Path, report: Report):
    """(height, width) of an image, decoding it fully so that a damaged file shows up; None if unreadable."""
    try:
        with Image.open(path) as img:
            img.load()
            report.image_modes[img.mode] += 1
            report.widths.append(img.width)
            report.heights.append(img.height)
            return img.height, img.width
    except Exception as err:  # PIL raises several types for bad files
        report.problems.append(f"cannot read image {path}: {err}")
        return None


def _split_members(root: Path, pairs, image_dir: Path, report: Report) -> dict:
    members = {}
    for split in split_names(root):
        try:
            members[split] = [mask for _, mask in select_split(root, pairs, split, image_dir)]
        except DatasetError as err:
            report.problems.append(str(err))
    return members


def _classes(root: Path, declaration, report: Report) -> tuple:
    """Class names when the masks can be read as declared (or as class ids); sets the advice."""
    if declaration.declares_classes:
        return declaration.classes
    names_file = root / "classes.txt"
    names = tuple(line.strip() for line in names_file.read_text().splitlines() if line.strip()) \
        if names_file.is_file() else None
    problem = misreading(report.survey, len(names) if names else None, root, mention_tool=False)
    if problem:
        report.problems.append("the masks cannot be read as class ids without a declaration")
        report.advice = problem
        return ()
    ids = [v for v in report.survey.counts if v != IGNORE_INDEX]
    report.advice = ("nothing to declare: the masks hold class ids "
                     f"{sorted(ids)[:SHOWN_VALUES]}{' ...' if len(ids) > SHOWN_VALUES else ''}"
                     f"{' and 255 (ignored)' if IGNORE_INDEX in report.survey.counts else ''}; name the classes "
                     f"in classes.txt or declare them (datasets/README.md)")
    return names or tuple(f"class_{i}" for i in range(max(ids, default=-1) + 1))


def format_report(report: Report) -> str:
    lines = [f"folder data set {report.root}", f"declaration: {report.source}",
             f"pairs: {report.pairs}   unpaired images: {len(report.unpaired_images)}   "
             f"unpaired masks: {len(report.unpaired_masks)}"]
    if report.widths:
        lines.append("image sizes (width x height): min {}x{}, median {}x{}, max {}x{}".format(
            *_stats(report.widths, report.heights)))
        lines.append("image modes: " + _counts(report.image_modes))
    if report.mask_formats:
        lines.append("mask formats: " + _counts(report.mask_formats) + "   modes: " + _counts(report.mask_modes))
        lines.append(f"masks whose size differs from their image: {len(report.mismatched)}"
                     + (" (resized to it: resize_masks)" if report.mismatched and report.resize_masks else ""))
    if report.lossy_masks:
        lines.append(f"lossy masks: {report.lossy_masks} ({_counts(report.lossy_encodings)}); pixels snapped "
                     f"from farther than the snap distance: {report.far_pixels}")
    if report.regions:
        share = 100 * report.outside_pixels / report.region_pixels if report.region_pixels else 0.0
        lines.append(f"regions of interest ({report.regions}): {report.region_masks} read; {share:.2f} % of "
                     f"the label pixels lie outside them (ignored in loss and metrics)")
    lines += _value_lines(report.survey)
    if report.classes and report.split_counts:
        lines += _class_lines(report)
    if report.problems:
        lines.append(f"problems ({len(report.problems)}):")
        lines += [f"  - {p}" for p in report.problems[:20]]
        if len(report.problems) > 20:
            lines.append(f"  ... and {len(report.problems) - 20} more")
    if report.advice:
        lines += ["what to declare:", *("  " + line for line in report.advice.splitlines())]
    lines.append("verdict: " + ("the data set loads as declared" if not report.problems else
                                "the folder data set would stop on the problems above"))
    return "\n".join(lines)


def _stats(widths, heights):
    areas = np.asarray(widths) * np.asarray(heights)
    order = np.argsort(areas, kind="stable")
    picks = (order[0], order[len(order) // 2], order[-1])  # by area, so each size is a real image's
    return [v for i in picks for v in (widths[i], heights[i])]


def _counts(counter: Counter) -> str:
    return ", ".join(f"{key} {n}" for key, n in counter.most_common())


def _value_lines(survey: Survey) -> list:
    total = sum(survey.counts.values())
    if not total:
        return []
    kind = "colours" if survey.colour_files else "values"
    lines = [f"mask {kind} found (share of all mask pixels):"]
    ranked = survey.counts.most_common()
    for value, count in ranked[:SHOWN_VALUES]:
        lines.append(f"  {show_value(value):>16}  {100 * count / total:6.2f} %")
    if len(ranked) > SHOWN_VALUES:
        rest = sum(count for _, count in ranked[SHOWN_VALUES:])
        lines.append(f"  {len(ranked) - SHOWN_VALUES} other {kind}: {100 * rest / total:.2f} %")
    return lines


def _class_lines(report: Report) -> list:
    splits = list(report.split_counts)
    heads = [f"{split} ({report.split_sizes[split]})" for split in splits]
    lines = ["class share of each split's pixels (pairs):", f"  {'class':<20}" + "".join(f"{h:>14}" for h in heads)]
    rows = [(i, name) for i, name in enumerate(report.classes)] + [(IGNORE_INDEX, "(ignored)")]
    for class_id, name in rows:
        cells = []
        for split in splits:
            total = sum(report.split_counts[split].values())
            share = report.split_counts[split].get(class_id, 0) / total if total else 0.0
            cells.append(f"{100 * share:13.2f}%")
        lines.append(f"  {name:<20}" + "".join(cells))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="the data set's folder (holding images/ and masks/, or as declared)")
    parser.add_argument("--dataset-kwargs", default="{}",
                        help="declaration keys as JSON, as training scripts take them; they replace dataset.json's")
    args = parser.parse_args(argv)
    try:
        options = json.loads(args.dataset_kwargs)
    except json.JSONDecodeError as err:
        parser.error(f"--dataset-kwargs is not valid JSON: {err}")
    if not isinstance(options, dict):
        parser.error(f"--dataset-kwargs must be a JSON object such as {as_json({'mask_name': '{id}_mask'})}")
    root = Path(args.root).expanduser()
    if not root.is_dir():
        parser.error(f"{root} is not a folder")
    try:
        report = inspect(root, options, progress=True)
    except DatasetError as err:  # a bad declaration or a missing folder: nothing to read
        print(f"inspect_data.py: {err}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
