"""What masks without a declaration hold, and what to declare when reading them as class ids would mislead.

Used by the folder data set (to stop before training on a misreading) and by
tools/inspect_data.py (to say what to declare).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .base import IGNORE_INDEX
from .declaration import DECLARATION_FILE, DEFAULTS, Value, as_json
from .mask_files import RawMask, value_counts

DOMINANT_SHARE = 0.005  # a value of a lossy mask holding less than 0.5 % of the pixels is taken for noise
MAX_SUGGESTED = 64


@dataclass(frozen=True)
class MaskSummary:
    """What a survey keeps of one mask: its value (or colour) counts and kind, not its pixels."""

    counts: dict
    colour: bool
    lossy: bool

    @classmethod
    def of(cls, raw: RawMask) -> "MaskSummary":
        return cls(value_counts(raw), raw.is_colour, raw.lossy)


@dataclass
class Survey:
    """Values (or colours) found in a set of masks, with their pixel counts."""

    counts: Counter = field(default_factory=Counter)
    colour_files: list[Path] = field(default_factory=list)
    lossy_files: list[Path] = field(default_factory=list)

    def add(self, path: Path, summary: MaskSummary) -> None:
        self.counts.update(summary.counts)
        if summary.colour:
            self.colour_files.append(path)
        if summary.lossy:
            self.lossy_files.append(path)

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


def _distance(a: Value, b: Value) -> int:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return max(abs(x - y) for x, y in zip(a, b))
    if isinstance(a, tuple) or isinstance(b, tuple):
        return 256
    return abs(a - b)


def suggested_declaration(survey: Survey) -> dict:
    """Declaration keys naming one class per (dominant) value or colour, for the user to rename."""
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
        return (f"mask {survey.lossy_files[0]} is a JPEG ({len(survey.lossy_files)} such masks): compression "
                f"changes the stored values, so they cannot be read as class ids. Declare the values, which "
                f"are then snapped to the nearest one; the masks' main values give:\n  {suggestion}\n{where}")
    values = [v for v in survey.values if not isinstance(v, tuple)]
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
