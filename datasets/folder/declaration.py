"""The declaration of a folder data set: what its masks mean and where its files are.

Read from `<root>/dataset.json` and/or the data set's options (`--dataset-kwargs`,
`build_dataset("folder", ..., **options)`); an option replaces the file's key of the
same name. Every key is optional; the format is documented in datasets/README.md:

    {"classes": {"background": 0, "vessel": 255},   # name -> mask value, or -> [r, g, b]
     "ignore": [128],                               # values (or colours) read as 255, ignored
     "images": "training/images", "masks": "training/1st_manual",
     "image_name": "{id}_training", "mask_name": "{id}_manual1",
     "roi": "training/mask", "roi_name": "{id}_training_mask",  # regions of interest (roi.py)
     "resize_masks": false, "snap": false, "snap_distance": 48, "max_far_fraction": 0.01}

`classes` may also be a list of names: class-id masks, class i stored as value i.
Without `classes`, masks are read as class ids (the folder data set's original rule).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..base import IGNORE_INDEX, DatasetError

DECLARATION_FILE = "dataset.json"

Value = Union[int, tuple[int, int, int]]  # a grey/id value, or an RGB colour

DEFAULTS: dict[str, Any] = {
    "classes": None, "ignore": [], "images": "images", "masks": "masks",
    "image_name": "{id}", "mask_name": "{id}", "roi": None, "roi_name": "{id}", "resize_masks": False,
    # Lossy (JPEG) masks: a pixel farther than snap_distance grey levels (per channel, for
    # colours) from every declared value is "far"; more than max_far_fraction of a mask's
    # pixels far means the declaration does not fit the file. JPEG at quality 50 leaves
    # about 0.2 % of a binary mask's pixels beyond 48 levels, so 1 % only trips on real misfits.
    "snap_distance": 48, "max_far_fraction": 0.01,
    # Lossless masks with intermediate grey levels along edges (drawn large, then resized with
    # interpolation): true snaps each value to the nearest declared one, as lossy masks are.
    "snap": False,
}


@dataclass(frozen=True)
class Declaration:
    """A validated declaration; `classes is None` means none was made (class-id masks)."""

    classes: tuple[str, ...] | None = None
    values: tuple[Value, ...] = ()
    ignore: tuple[Value, ...] = ()
    images: str = "images"
    masks: str = "masks"
    image_name: str = "{id}"
    mask_name: str = "{id}"
    roi: str | None = None  # the folder of region-of-interest masks, relative to the root
    roi_name: str = "{id}"
    resize_masks: bool = False
    snap_distance: int = 48
    max_far_fraction: float = 0.01
    snap: bool = False
    source: str = "defaults"
    raw: dict = field(default_factory=dict)  # the merged keys as given, for messages and reports

    @property
    def declares_classes(self) -> bool:
        return self.classes is not None

    @property
    def by_colour(self) -> bool:
        """True when the classes are RGB colours, False for values (or no declaration)."""
        return bool(self.values) and isinstance(self.values[0], tuple)


def load_declaration(root: Path, options: dict[str, Any] | None = None) -> Declaration:
    """The declaration of the data set in `root`: its dataset.json overridden by `options`."""
    merged: dict[str, Any] = {}
    sources = []
    path = root / DECLARATION_FILE
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
        if not isinstance(loaded, dict):
            raise DatasetError(f"{path} must hold a JSON object such as {example()}")
        merged.update(loaded)
        sources.append(str(path))
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if options:
        merged.update(options)
        sources.append("the data set options (--dataset-kwargs)")
    return parse_declaration(merged, " + ".join(sources) or "defaults")


def parse_declaration(keys: dict[str, Any], source: str) -> Declaration:
    """Validate `keys`; every mistake is a DatasetError naming `source`, the key and what was expected."""
    unknown = sorted(set(keys) - set(DEFAULTS))
    if unknown:
        raise DatasetError(f"unknown key {unknown[0]!r} in {source}; valid keys: {', '.join(DEFAULTS)}")
    merged = {**DEFAULTS, **keys}

    def fail(key: str, expected: str) -> DatasetError:
        return DatasetError(f"{key!r} in {source} is {merged[key]!r}; expected {expected}")

    names, values = _parse_classes(merged["classes"], fail)
    ignore = merged["ignore"]
    ignore = [ignore] if isinstance(ignore, int) and not isinstance(ignore, bool) else ignore
    if not isinstance(ignore, list):
        raise fail("ignore", "a list of mask values or of [r, g, b] colours")
    if ignore and names is None:
        raise fail("ignore", f"no ignore list without 'classes' (undeclared masks already ignore {IGNORE_INDEX})")
    colour = bool(values) and isinstance(values[0], tuple)
    ignored = tuple(_parse_value(v, colour, lambda: fail("ignore", _kind_text(colour))) for v in ignore)
    for value in ignored:
        if value in values:
            raise fail("ignore", f"values of no class, but {_show(value)} is the value of class "
                                 f"{names[values.index(value)]!r}")
    for key in ("images", "masks"):
        if not isinstance(merged[key], str) or not merged[key]:
            raise fail(key, "a folder, relative to the data set's root")
    if merged["roi"] is not None and (not isinstance(merged["roi"], str) or not merged["roi"]):
        raise fail("roi", "a folder of region-of-interest masks, relative to the data set's root")
    if "roi_name" in keys and merged["roi"] is None:
        raise fail("roi_name", "no region name pattern without \"roi\" (the folder of region masks)")
    for key in ("image_name", "mask_name", "roi_name"):
        pattern = merged[key]
        if not isinstance(pattern, str) or pattern.count("{id}") != 1 or "/" in pattern:
            raise fail(key, "a file name without extension holding {id} once, e.g. \"{id}_mask\"")
    for key in ("resize_masks", "snap"):
        if not isinstance(merged[key], bool):
            raise fail(key, "true or false")
    if merged["snap"] and names is None:
        raise fail("snap", "no snapping without 'classes' (the values to snap to)")
    distance = merged["snap_distance"]
    if isinstance(distance, bool) or not isinstance(distance, int) or not 0 <= distance <= 255:
        raise fail("snap_distance", "an integer 0..255 (grey levels)")
    fraction = merged["max_far_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise fail("max_far_fraction", "a number between 0 and 1")
    return Declaration(names, values, ignored, merged["images"], merged["masks"], merged["image_name"],
                       merged["mask_name"], merged["roi"], merged["roi_name"], merged["resize_masks"], distance, float(fraction), merged["snap"], source,
                       dict(keys))


def _parse_classes(classes, fail) -> tuple[tuple[str, ...] | None, tuple[Value, ...]]:
    if classes is None:
        return None, ()
    expected = ('{"name": value, ...} or {"name": [r, g, b], ...} (one kind for all), '
                'or a list of names for class-id masks')
    if isinstance(classes, list) and classes and all(isinstance(n, str) and n for n in classes):
        pairs = [(name, index) for index, name in enumerate(classes)]
    elif isinstance(classes, dict) and classes:
        pairs = list(classes.items())
    else:
        raise fail("classes", expected)
    if len(pairs) > IGNORE_INDEX:
        raise fail("classes", f"at most {IGNORE_INDEX} classes ({IGNORE_INDEX} is the ignore id)")
    colour = isinstance(pairs[0][1], list)
    values: list[Value] = []
    for name, value in pairs:
        parsed = _parse_value(value, colour, lambda: fail("classes", expected + f"; class {name!r} has {value!r}"))
        if parsed in values:
            raise fail("classes", f"one value per class, but {_show(parsed)} is given to "
                                  f"{pairs[values.index(parsed)][0]!r} and {name!r}")
        values.append(parsed)
    return tuple(name for name, _ in pairs), tuple(values)


def _parse_value(value, colour: bool, fail) -> Value:
    if colour:
        if (isinstance(value, list) and len(value) == 3
                and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)):
            return tuple(value)
        raise fail()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    raise fail()


def _kind_text(colour: bool) -> str:
    return "a list of [r, g, b] colours (0..255)" if colour else "a list of mask values (integers 0..65535)"


def _show(value: Value) -> str:
    return f"[{value[0]}, {value[1]}, {value[2]}]" if isinstance(value, tuple) else str(value)


def show_value(value: Value) -> str:
    """A value or colour as it is written in a declaration."""
    return _show(value)


def example() -> str:
    return '{"classes": {"background": 0, "foreground": 255}}'


def as_json(keys: dict[str, Any]) -> str:
    """A declaration on one line, as it goes into dataset.json or --dataset-kwargs."""
    return json.dumps(keys, separators=(", ", ": "))
