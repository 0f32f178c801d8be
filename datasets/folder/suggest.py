"""What masks without a declaration hold, and what to declare when reading them as class ids would mislead.

Used by the folder data set (to stop before training on a misreading) and by
tools/inspect_data.py (to say what to declare).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..base import IGNORE_INDEX
from .declaration import DECLARATION_FILE, DEFAULTS, Value, as_json, show_value
from .mask_files import RawMask, ramp_pixels, value_counts

DOMINANT_SHARE = 0.005  # a value of a lossy mask holding less than 0.5 % of the pixels is taken for noise
MAX_SUGGESTED = 64
# Soft edges: at least this many distinct values are mostly (over half their pixels) ramp pixels
# (mask_files.ramp_pixels). A resized 0/255 disc of 32 x 32 pixels has about 90; class-id masks none.
SOFT_EDGE_VALUES = 4
# Lossy masks of class ids: a value within the snap distance of a more common one (a peak) is noise
# unless it holds at least this share of the peak's pixels. Measured on 0/255 JPEG masks of 24 x 32
# and 64 x 64 pixels at quality 50..95: the commonest noise value holds at most 0.19 of its peak;
# class ids 0..3 of similar areas at quality 75: 0.46 and more.
CLOSE_VALUE_RATIO = 0.33


@dataclass(frozen=True)
class MaskSummary:
    """What a survey keeps of one mask: its value (or colour) counts and kind, not its pixels."""

    counts: dict
    colour: bool
    lossy: bool
    encoding: str = ""  # the file's format, or its lossy encoding
    ramp: dict = field(default_factory=dict)  # value -> its pixels that lie on a ramp (lossless grey masks)

    @classmethod
    def of(cls, raw: RawMask) -> "MaskSummary":
        ramp = {}
        if not raw.is_colour and not raw.lossy:
            found, counts = np.unique(raw.data[ramp_pixels(raw.data)], return_counts=True)
            ramp = {int(v): int(n) for v, n in zip(found, counts)}
        return cls(value_counts(raw), raw.is_colour, raw.lossy, raw.format, ramp)


@dataclass
class Survey:
    """Values (or colours) found in a set of masks, with their pixel counts."""

    counts: Counter = field(default_factory=Counter)
    colour_files: list[Path] = field(default_factory=list)
    lossy_files: list[Path] = field(default_factory=list)
    lossy_encodings: Counter = field(default_factory=Counter)
    ramp: Counter = field(default_factory=Counter)

    def add(self, path: Path, summary: MaskSummary) -> None:
        self.counts.update(summary.counts)
        self.ramp.update(summary.ramp)
        if summary.colour:
            self.colour_files.append(path)
        if summary.lossy:
            self.lossy_files.append(path)
            self.lossy_encodings[summary.encoding] += 1

    @property
    def soft_values(self) -> list[int]:
        """Values that occur mostly on ramps between other values: intermediate levels along edges."""
        return sorted(v for v, n in self.ramp.items() if 2 * n > self.counts[v])

    @property
    def values(self) -> list[Value]:
        return sorted(self.counts, key=lambda v: (isinstance(v, tuple), v))


def dominant(counts: Counter, separation: int = DEFAULTS["snap_distance"]) -> list[Value]:
    """The values that look stored on purpose: the most common first, skipping any within
    `separation` of one already taken (JPEG noise around it) or under DOMINANT_SHARE."""
    total = sum(counts.values()) or 1
    chosen: list[Value] = []
    for value, count in counts.most_common():
        if count < DOMINANT_SHARE * total or len(chosen) == MAX_SUGGESTED:
            break
        if all(_distance(value, other) > separation for other in chosen):
            chosen.append(value)
    return sorted(chosen, key=lambda v: (isinstance(v, tuple), v))


def crowded(counts: Counter, separation: int = DEFAULTS["snap_distance"]) -> list[Value]:
    """Common values of lossy masks that lie within `separation` of a more common one (a peak) while
    holding a comparable share of pixels (CLOSE_VALUE_RATIO): values stored on purpose closer together
    than the compression noise, such as class ids 0..3 in JPEG masks. Empty when there are none."""
    total = sum(counts.values()) or 1
    peaks: list[tuple[Value, int]] = []
    found: set = set()
    for value, count in counts.most_common():
        if count < DOMINANT_SHARE * total:
            break
        near = [(peak, n) for peak, n in peaks if _distance(value, peak) <= separation]
        if not near:
            peaks.append((value, count))
        elif count >= CLOSE_VALUE_RATIO * near[0][1]:
            found.update((value, near[0][0]))
    return sorted(found, key=lambda v: (isinstance(v, tuple), v))


def _distance(a: Value, b: Value) -> int:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return max(abs(x - y) for x, y in zip(a, b))
    if isinstance(a, tuple) or isinstance(b, tuple):
        return 256
    return abs(a - b)


def suggested_declaration(survey: Survey) -> dict:
    """Declaration keys naming one class per (dominant) value or colour, for the user to rename;
    masks with soft edges get their main values and "snap": true."""
    soft = survey.soft_values if len(survey.soft_values) >= SOFT_EDGE_VALUES else []
    if soft and not (survey.lossy_files or survey.colour_files):
        main = dominant(Counter({v: n for v, n in survey.counts.items() if v not in soft}))
        names = ["background", "foreground"] if len(main) == 2 else [f"class_{v}" for v in main]
        return {"classes": dict(zip(names, main)), "snap": True}
    lossy_or_colour = survey.lossy_files or survey.colour_files
    values = dominant(survey.counts) if lossy_or_colour else survey.values[:MAX_SUGGESTED]
    colours = [v for v in values if isinstance(v, tuple)]
    if survey.colour_files:
        greys = [(v, v, v) for v in values if not isinstance(v, tuple)]  # grey masks among colour ones
        return {"classes": {f"class_{i}": list(c) for i, c in enumerate(sorted(set(colours + greys)))}}
    if len(values) == 2:
        return {"classes": {"background": values[0], "foreground": values[1]}}
    return {"classes": {f"class_{v}": v for v in values}}


def misreading(survey: Survey, num_classes: int | None, root: Path, mention_tool: bool = True) -> str | None:
    """Why these undeclared masks cannot be read as class ids, with what to declare; None if they can.

    `num_classes` is the count that classes.txt or num_classes= gives (None when inferred).
    """
    if not survey.counts:
        return None
    where = f"Write it into {root / DECLARATION_FILE}, or pass it as --dataset-kwargs '<the JSON>'."
    if mention_tool:
        where += f" `python tools/inspect_data.py {root}` lists every value with its share of the pixels."
    if survey.colour_files or survey.lossy_files:
        suggestion = as_json(suggested_declaration(survey))
    if survey.colour_files:
        return (f"mask {survey.colour_files[0]} is a colour image ({len(survey.colour_files)} such masks): "
                f"without a declaration, masks are read as one class id per pixel. Declare each class's colour, "
                f"for example (rename the classes; colours under {DOMINANT_SHARE:.1%} of the pixels left out):\n"
                f"  {suggestion}\n{where}")
    if survey.lossy_files:
        encodings = " / ".join(survey.lossy_encodings)
        close = crowded(survey.counts)
        if not close and len(dominant(survey.counts)) < 2:  # one value: a declaration of a single class
            close = sorted(v for v, _ in survey.counts.most_common(4))
        if close:
            shown = ", ".join(show_value(v) for v in close[:8])
            return (f"mask {survey.lossy_files[0]} is stored lossily ({encodings}; {len(survey.lossy_files)} such "
                    f"masks), and its common values {shown} lie within {DEFAULTS['snap_distance']} levels of each "
                    f"other: class ids that close do not survive lossy compression, whose noise is larger than "
                    f"their spacing, so no declaration reads them right (snapping would put about every pixel "
                    f"near the wrong value). Re-save the masks losslessly (PNG, lossless WebP, TIFF without "
                    f"JPEG compression) from their originals, or store the classes as values spread apart "
                    f"(e.g. 0, 85, 170, 255) and declare those. {where}")
        return (f"mask {survey.lossy_files[0]} is stored lossily ({encodings}; {len(survey.lossy_files)} such "
                f"masks): compression changes the stored values, so they cannot be read as class ids. Declare "
                f"the values, which are then snapped to the nearest one; the masks' main values give:\n"
                f"  {suggestion}\n{where}")
    values = [v for v in survey.values if not isinstance(v, tuple)]
    soft = survey.soft_values
    if len(soft) >= SOFT_EDGE_VALUES:
        suggestion = as_json(suggested_declaration(survey))
        examples = ", ".join(map(str, soft[:: max(1, len(soft) // 4)][:4]))
        return (f"the masks hold {len(values)} distinct values, and {len(soft)} of them (e.g. {examples}) occur "
                f"mostly along edges, between the values on either side: intermediate grey levels left by "
                f"resizing masks with interpolation (bilinear or bicubic, the default of Image.resize and of "
                f"image editors). Read as class ids, each level would be a class of its own (and 255 ignored). "
                f"Declare the main values and snap every value to the nearest one:\n  {suggestion}\n{where}")
    wide = [v for v in values if v > IGNORE_INDEX]
    if wide:
        return (f"the masks hold values up to {max(wide)} (more than 8 bits): read as class ids, that would "
                f"make {max(wide) + 1} classes, with 255, the ignore id, among them. At most {IGNORE_INDEX} "
                f"classes (ids 0..{IGNORE_INDEX - 1}) are supported. If the values mark classes, declare each "
                f"(\"classes\": {{\"name\": value, ...}}, values up to 65535): {where}")
    if num_classes is not None and num_classes > IGNORE_INDEX:
        return (f"{num_classes} classes are given (classes.txt or num_classes=), but at most {IGNORE_INDEX} "
                f"(ids 0..{IGNORE_INDEX - 1}) are supported: {IGNORE_INDEX} marks ignored pixels.")
    if values == [0, IGNORE_INDEX]:
        return ("the masks hold only the values 0 and 255, and nothing declares what they mean. Two readings:\n"
                "  (a) binary masks, 0 = background and 255 = foreground (two classes; the usual 0/255 format):\n"
                f"      {as_json({'classes': {'background': 0, 'foreground': 255}})}\n"
                "  (b) class ids, 0 = the one class and 255 = ignored (one class: nothing to learn):\n"
                f"      {as_json({'classes': {'background': 0}, 'ignore': [255]})}\n"
                f"Declare the one that is meant. {where}")
    if len(values) == 2 and values != [0, 1] and (num_classes is None or values[1] >= num_classes):
        low, high = values
        return (f"the masks hold only the values {low} and {high}: read as class ids, that would make "
                f"{high + 1} classes of which {high - 1} never occur. If they are binary masks "
                f"({low} = background, {high} = foreground), declare:\n"
                f"  {as_json({'classes': {'background': low, 'foreground': high}})}\n"
                f"If they are class ids, list every class name in order: \"classes\": [\"name_0\", ...]. {where}")
    ids = [v for v in values if v != IGNORE_INDEX]
    if num_classes is None and ids and len(ids) > 1 and 2 * len(ids) < max(ids) + 1:
        # Grey levels such as 0/128/255 (two classes plus an outline, or three classes): read as
        # ids they would make max + 1 classes, most of them empty. Class ids are dense.
        suggestion = as_json({"classes": {f"class_{v}": v for v in values}})
        return (f"the masks hold the values {', '.join(map(str, values))}: read as class ids, that would make "
                f"{max(ids) + 1} classes of which {max(ids) + 1 - len(ids)} never occur, so they look like grey "
                f"levels. Declare what each value means (rename the classes; move a value to \"ignore\" if it "
                f"marks pixels to leave out):\n  {suggestion}\nIf they are class ids, list every class name in "
                f"classes.txt or as \"classes\": [\"name_0\", ...]. {where}")
    return None
