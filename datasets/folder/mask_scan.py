"""Build-time passes of the folder data set over its masks, before any training step.

- `scan_headers`: every mask's header (mode, real lossy encoding, palette), from which
  the one reading of the set's palette masks is decided (mask_files.palette_reading).
- `snapping_report`: reads every mask that will be snapped (lossy files; all masks under
  `"snap": true`) once, so that a declaration that does not fit stops the build, and says
  how many pixels were snapped from far. During training the masks are decoded in
  DataLoader worker processes, whose counts never reach the main process.
Headers are cached per file version for the process (train and val builds share a scan).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Callable

from .mask_encoding import MaskEncoder
from .mask_files import MaskHeader, RawMask, read_header

_HEADER_CACHE: dict[tuple[str, int, int], MaskHeader | None] = {}


def scan_headers(paths: list[Path]) -> list[MaskHeader | None]:
    """The header of every mask in `paths` (None for a missing or unreadable file: loading it
    reports the error with the file's name)."""
    headers = []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            headers.append(None)
            continue
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _HEADER_CACHE:
            _HEADER_CACHE[key] = read_header(path)
        headers.append(_HEADER_CACHE[key])
    return headers


def snapping_report(masks: list[Path], headers: list[MaskHeader | None], encoder: MaskEncoder,
                    read_raw: Callable[[Path], RawMask], split: str) -> str | None:
    """Encode every mask of `masks` that is snapped (raising the encoder's DatasetError on the first
    that does not fit) and return one line on the far pixels; None when no mask is snapped."""
    snap_all = encoder.declaration.snap
    chosen = [(m, h) for m, h in zip(masks, headers) if snap_all or (h is not None and h.lossy)]
    if not chosen:
        return None
    far = total = 0
    for mask, _ in chosen:
        encoded = encoder.encode(read_raw(mask), mask)
        far += encoded.far_pixels
        total += encoded.ids.size
    kinds = Counter(h.lossy for _, h in chosen if h is not None and h.lossy)
    what = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    if snap_all and len(chosen) > sum(kinds.values()):
        what = ", ".join(filter(None, [what, f"{len(chosen) - sum(kinds.values())} lossless (snap: true)"]))
    edges = " (lossless masks: off the edge ramps)" if snap_all else ""
    return (f"folder {split}: {len(chosen)} mask(s) snapped to the declared values ({what}); {far} of their "
            f"{total} pixels ({100 * far / max(total, 1):.3f} %) were farther than "
            f"{encoder.declaration.snap_distance} levels from every declared value{edges}")
