"""Declared mask values or colours -> class ids, exactly or (lossy files) by snapping.

Lossless masks must hold only declared values: anything else is an error naming the
file, the value and its pixel count. Lossy masks (JPEG, lossy WebP, JPEG-compressed
TIFF) are snapped pixel by pixel to the nearest declared value (class or ignored);
pixels farther than `snap_distance` from all of them are counted as "far" and, past
`max_far_fraction` of the mask, stop the run: so many means the declaration does not
describe the file. Declared values within `snap_distance` of each other cannot be told
apart in a lossy file, so a lossy mask under such a declaration is an error too.
With `"snap": true`, lossless masks are snapped as well (masks resized with
interpolation, whose edges hold intermediate levels); there a far pixel counts only
when it is not on a ramp between its neighbours (mask_files.ramp_pixels), because
far levels along edges are what such masks hold. Distances between colours are the
largest per-channel difference.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base import IGNORE_INDEX, DatasetError
from .declaration import Declaration, Value, show_value
from .mask_files import RawMask, pack, ramp_pixels, unpack


@dataclass
class Encoded:
    """Class ids (255 = ignored) of one mask and how many of its pixels were far from every declared value."""

    ids: np.ndarray
    far_pixels: int


class MaskEncoder:
    """Encodes raw masks by a declaration that lists classes (see the module docstring)."""

    def __init__(self, declaration: Declaration) -> None:
        if not declaration.declares_classes:
            raise ValueError("MaskEncoder needs a declaration with classes")
        self.declaration = declaration
        self.colour = declaration.by_colour
        targets = list(declaration.values) + list(declaration.ignore)
        self.targets = targets
        self.target_ids = np.array(list(range(len(declaration.values))) + [IGNORE_INDEX] * len(declaration.ignore),
                                   dtype=np.int64)
        self.keys = np.array([_key(t) for t in targets], dtype=np.int64)
        self.order = np.argsort(self.keys)
        self.closest = _closest_pair(targets)  # (distance, a, b), or None for a single value

    def encode(self, raw: RawMask, path: Path) -> Encoded:
        data = raw.data
        if not self.colour and raw.is_colour:
            data = self._grey_from_colour(raw, path)
        keys = pack(data) if self.colour else data
        if raw.lossy:
            self._check_spacing(path, raw.format)
            return self._snap(keys, path, raw.format)
        if self.declaration.snap:
            return self._snap(keys, path, "snap: true", on_edges=ramp_pixels(data))
        return Encoded(self._exact(keys, path), 0)

    def _check_spacing(self, path: Path, fmt: str) -> None:
        d = self.declaration
        if self.closest is not None and self.closest[0] <= d.snap_distance:
            distance, a, b = self.closest
            raise DatasetError(
                f"label {path} is stored lossily ({fmt}), but the declaration ({d.source}) lists values "
                f"{show_value(a)} and {show_value(b)}, {distance} level(s) apart: closer than snap_distance "
                f"({d.snap_distance}), the noise that lossy compression adds. Class ids that close cannot be "
                f"told apart in such a file, so snapping would read many pixels as the wrong class. Re-save the "
                f"masks losslessly (PNG, lossless WebP, TIFF without JPEG compression) from their originals, or "
                f"store the classes as values spread apart and declare those; lower snap_distance only if the "
                f"files are known to be barely compressed")

    def _grey_from_colour(self, raw: RawMask, path: Path) -> np.ndarray:
        """A colour file under a declaration of values: grey only if its channels agree (JPEG: nearly)."""
        rgb = raw.data.astype(np.int64)
        spread = rgb.max(axis=2) - rgb.min(axis=2)
        allowed = self.declaration.snap_distance if raw.lossy else 0
        if spread.max() > allowed:
            y, x = np.unravel_index(int(spread.argmax()), spread.shape)
            raise DatasetError(
                f"label {path} is a colour image (pixel at row {y}, column {x} is "
                f"{show_value(tuple(int(c) for c in raw.data[y, x]))}) but the declaration ({self.declaration.source}) "
                f"lists grey values; declare each class by its colour, e.g. \"classes\": {{\"road\": [128, 64, 128]}}")
        return np.rint(rgb.mean(axis=2)).astype(np.int64)

    def _exact(self, keys: np.ndarray, path: Path) -> np.ndarray:
        sorted_keys = self.keys[self.order]
        position = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
        known = sorted_keys[position] == keys
        if not known.all():
            found, counts = np.unique(keys[~known], return_counts=True)
            raise DatasetError(self._undeclared_message(path, found, counts))
        return self.target_ids[self.order][position]

    def _snap(self, keys: np.ndarray, path: Path, fmt: str, on_edges: np.ndarray | None = None) -> Encoded:
        found, inverse = np.unique(keys, return_inverse=True)
        values = np.array([unpack(k) for k in found] if self.colour else found[:, None], dtype=np.int64)
        targets = np.array([t if self.colour else (t,) for t in self.targets], dtype=np.int64)
        distance = np.abs(values[:, None, :] - targets[None, :, :]).max(axis=2)  # found x targets
        nearest = distance.argmin(axis=1)
        far = distance.min(axis=1) > self.declaration.snap_distance
        far_map = far[inverse].reshape(keys.shape)
        if on_edges is not None:  # snap: true: far levels on ramps are the soft edges themselves
            far_map &= ~on_edges
        far_pixels = int(far_map.sum())
        total = keys.size
        if total and far_pixels > self.declaration.max_far_fraction * total:
            counts = np.bincount(inverse.ravel()[far_map.ravel()], minlength=len(found))
            worst = np.argsort(-(counts * far))[:3]
            examples = ", ".join(f"{show_value(_value(found[i], self.colour))} ({counts[i]} pixels)"
                                 for i in worst if far[i])
            kind = f"is lossy ({fmt})" if on_edges is None else "is snapped (snap: true)"
            off = "" if on_edges is None else ", off the edges,"
            raise DatasetError(
                f"label {path} {kind} and {far_pixels} of its {total} pixels "
                f"({100 * far_pixels / total:.1f} %){off} are more than {self.declaration.snap_distance} levels from "
                f"every declared value ({self._declared_text()}), e.g. {examples}; max_far_fraction is "
                f"{self.declaration.max_far_fraction}: check the declaration ({self.declaration.source}), "
                f"or raise snap_distance / max_far_fraction if the file is only very noisy")
        return Encoded(self.target_ids[nearest][inverse].reshape(keys.shape), far_pixels)

    def _undeclared_message(self, path: Path, found: np.ndarray, counts: np.ndarray) -> str:
        kind = "colour" if self.colour else "value"
        order = np.argsort(-counts)
        listed = ", ".join(f"{show_value(_value(found[i], self.colour))} ({int(counts[i])} pixels)"
                           for i in order[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        first = order[0]
        message = (f"label {path} holds {kind} {show_value(_value(found[first], self.colour))} in "
                   f"{int(counts[first])} pixels, which the declaration ({self.declaration.source}) does not list; "
                   f"undeclared {kind}s found: {listed}{more}. Declared: {self._declared_text()}. Add each to "
                   f"\"classes\" or \"ignore\"")
        declared = self.keys[self.target_ids != IGNORE_INDEX] if not self.colour else np.array([])
        if len(found) >= 3 and len(declared) >= 2 and declared.min() < found.min() and found.max() < declared.max():
            message += (f". Values between the declared ones, this many, are usually intermediate grey levels "
                        f"along edges (masks resized with interpolation): declare \"snap\": true to snap every "
                        f"value to the nearest declared one")
        return message

    def _declared_text(self) -> str:
        d = self.declaration
        classes = ", ".join(f"{name} = {show_value(v)}" for name, v in zip(d.classes, d.values))
        ignored = ", ".join(show_value(v) for v in d.ignore) or "none"
        return f"{classes}; ignored: {ignored}"


def _closest_pair(values: list[Value]) -> tuple[int, Value, Value] | None:
    """The two declared values nearest each other (largest channel difference for colours)."""
    best = None
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            distance = max(abs(x - y) for x, y in zip(a, b)) if isinstance(a, tuple) else abs(a - b)
            if best is None or distance < best[0]:
                best = (distance, a, b)
    return best


def _key(value: Value) -> int:
    if isinstance(value, tuple):
        return (value[0] << 16) | (value[1] << 8) | value[2]
    return int(value)


def _value(key, colour: bool) -> Value:
    return unpack(int(key)) if colour else int(key)
