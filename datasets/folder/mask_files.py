"""Reading a mask file of any common format into what it shows: values or colours.

The rule, by PIL mode (documented in datasets/README.md):
- one value per pixel (L, I, I;16): the stored value;
- 1-bit (bilevel GIF, TIFF, BMP): 0 and 255, as a viewer shows them;
- palette (P, GIF and palette PNGs): decided once for a data set (`palette_reading`):
  the palette index, as in PASCAL VOC's class-id PNGs, whose palette only colours the
  ids, as soon as one mask's palette holds a colour that is not a grey; else (every
  palette all greys) the grey level shown, because GIF writers renumber the palette
  (a 0/255 mask saved as GIF is stored as indices 0/1 with a black/white palette).
  A file read on its own (palette "auto") takes the grey level when every colour it
  uses is a grey;
- RGB(A): the grey level when the three channels are equal everywhere, else colours;
- alpha channels are not used.
A mask stored lossily (JPEG, lossy WebP, JPEG- or WebP-compressed TIFF: decided from
the file's real encoding, not its suffix) is flagged `lossy`: its values are near, not
at, the stored ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..base import IMAGE_SUFFIXES, DatasetError

MASK_SUFFIXES = IMAGE_SUFFIXES  # masks come in the same formats as images
LOSSY_FORMATS = ("JPEG", "MPO")  # MPO: a JPEG with extra frames, as some cameras write
LOSSY_TIFF = {"jpeg": "JPEG-compressed TIFF", "tiff_jpeg": "JPEG-compressed TIFF", "webp": "WebP-compressed TIFF"}
PALETTE_READINGS = ("auto", "indices", "grey")


@dataclass
class RawMask:
    """A mask as stored: `data` is H x W int64 values, or H x W x 3 uint8 colours."""

    data: np.ndarray
    lossy: bool
    mode: str
    format: str  # PIL's format; for lossy masks, the encoding (e.g. "lossy WebP")

    @property
    def is_colour(self) -> bool:
        return self.data.ndim == 3

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.data.shape[0], self.data.shape[1]


def read_mask_file(path: Path, colours: bool = False, palette: str = "auto") -> RawMask:
    """Read `path`; with `colours`, always as H x W x 3 colours (for colour declarations).
    `palette` ("auto", "indices" or "grey") is the data set's reading of palette masks."""
    if palette not in PALETTE_READINGS:
        raise ValueError(f"palette must be one of {PALETTE_READINGS}, got {palette!r}")
    try:
        with Image.open(path) as img:
            mode, fmt = img.mode, img.format or path.suffix.lstrip(".").upper()
            lossy = lossy_encoding(img, path)
            data = _colours(img, path) if colours else _values(img, path, palette)
    except DatasetError:
        raise
    except Exception as err:  # PIL raises several types for bad files
        raise DatasetError(f"cannot read label {path}: {err}") from None
    return RawMask(data, lossy is not None, mode, lossy or fmt)


def lossy_encoding(img: Image.Image, path: Path) -> str | None:
    """How an opened image file is compressed lossily ("JPEG", "lossy WebP", "JPEG-compressed
    TIFF", ...), or None when its pixels are stored exactly."""
    if img.format in LOSSY_FORMATS:
        return "JPEG"
    if img.format == "WEBP":
        return "lossy WebP" if _webp_is_lossy(path) else None
    if img.format == "TIFF":
        return LOSSY_TIFF.get(str(img.info.get("compression", "")))
    return None


def _webp_is_lossy(path: Path) -> bool:
    """True when a WebP file holds a lossy (VP8) bitstream rather than a lossless (VP8L) one.

    A RIFF file of chunks (4-byte tag, little-endian 4-byte size, data padded to even
    length); the extended format (VP8X) puts the bitstream after other chunks, and
    animations (ANMF) hold one per frame, 16 bytes into the frame's data.
    """
    with open(path, "rb") as f:
        if f.read(12)[8:] != b"WEBP":
            return False

        def lossy_in(end: int | None) -> bool:  # reads chunk headers only, seeking over their data
            while end is None or f.tell() + 8 <= end:
                header = f.read(8)
                if len(header) < 8:
                    return False
                tag, size = header[:4], int.from_bytes(header[4:], "little")
                after = f.tell() + size + (size & 1)
                if tag == b"VP8 ":
                    return True
                if tag == b"ANMF":
                    f.seek(16, 1)
                    if lossy_in(f.tell() - 16 + size):
                        return True
                f.seek(after)
            return False

        return lossy_in(None)


@dataclass(frozen=True)
class MaskHeader:
    """What a mask file's header tells without decoding its pixels."""

    mode: str
    lossy: str | None           # the lossy encoding, None if exact
    colour_palette: bool        # a palette file whose palette holds a colour that is not a grey


def read_header(path: Path) -> MaskHeader | None:
    """The header of a mask file; None when unreadable (loading it reports the error)."""
    try:
        with Image.open(path) as img:
            flat = img.getpalette() if img.mode in ("P", "PA") else None
            entries = np.asarray(flat or [], np.int64).reshape(-1, 3)
            grey = (entries[:, 0] == entries[:, 1]) & (entries[:, 1] == entries[:, 2])
            colour = bool(len(entries)) and not grey.all()
            return MaskHeader(img.mode, lossy_encoding(img, path), colour)
    except Exception:  # PIL raises several types for bad files
        return None


def palette_reading(headers: list[MaskHeader | None]) -> str:
    """The one reading of a data set's palette masks: "indices" when any mask's palette holds a
    colour (class-id PNGs, whose palette colours the ids), else "grey" (see the module docstring)."""
    return "indices" if any(h is not None and h.colour_palette for h in headers) else "grey"


def _values(img: Image.Image, path: Path, palette: str = "auto") -> np.ndarray:
    if img.mode == "F":
        raise DatasetError(f"label {path} holds floating-point values (mode F); expected one integer "
                           f"value per pixel or one colour per class")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "L"):
        return np.asarray(img).astype(np.int64)
    if img.mode == "1":
        return np.asarray(img.convert("L")).astype(np.int64)
    if img.mode in ("P", "PA"):
        indices = np.asarray(img.convert("P") if img.mode == "PA" else img).astype(np.int64)
        if palette == "indices":
            return indices
        grey = _grey_palette(img, indices, every_entry=palette == "grey")
        return grey[indices] if grey is not None else indices
    if img.mode == "LA":
        return np.asarray(img.getchannel("L")).astype(np.int64)
    rgb = np.asarray(img.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].astype(np.int64)
    return rgb


def _grey_palette(img: Image.Image, indices: np.ndarray, every_entry: bool = False) -> np.ndarray | None:
    """index -> grey level when every used palette entry is a grey, else None; with `every_entry`
    (the data set reads its palettes as greys) the first channel of any entry."""
    flat = img.getpalette() or []
    table = np.zeros((256, 3), np.int64)
    entries = np.asarray(flat[: 3 * 256], np.int64).reshape(-1, 3)
    table[: len(entries)] = entries
    used = np.unique(indices)
    if used.max(initial=0) >= len(entries):
        return None  # indices beyond the palette: only ids make sense
    chosen = table[used]
    if every_entry:
        return table[:, 0]
    if (chosen[:, 0] == chosen[:, 1]).all() and (chosen[:, 1] == chosen[:, 2]).all():
        return table[:, 0]
    return None


def _colours(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        raise DatasetError(f"label {path} is a {img.mode} image (more than 8 bits per pixel) but the "
                           f"declaration lists colours; declare its values instead")
    return np.asarray(img.convert("RGB"))


def pack(colours: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 colours as H x W int64 keys r * 65536 + g * 256 + b (one key per colour)."""
    c = colours.astype(np.int64)
    return (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]


def unpack(key: int) -> tuple[int, int, int]:
    return (int(key) >> 16) & 255, (int(key) >> 8) & 255, int(key) & 255


def value_counts(raw: RawMask) -> dict:
    """{value or (r, g, b): pixel count} of one mask."""
    keys = pack(raw.data) if raw.is_colour else raw.data
    found, counts = np.unique(keys, return_counts=True)
    if raw.is_colour:
        return {unpack(k): int(n) for k, n in zip(found, counts)}
    return {int(k): int(n) for k, n in zip(found, counts)}


def ramp_pixels(data: np.ndarray) -> np.ndarray:
    """H x W booleans: pixels whose value lies strictly between those of their two neighbours
    along a row or a column (for colours: within both on every channel, equal to neither).

    The mark of a mask drawn large and resized with interpolation: every edge becomes a ramp
    of intermediate levels. Class-id masks are flat regions, where a pixel between two
    neighbours of other classes takes a one-pixel-wide region of a third class whose id
    happens to lie between theirs.
    """
    values = data.astype(np.int64)
    if values.ndim == 2:
        values = values[..., None]
    ramp = np.zeros(values.shape[:2], bool)
    for axis in (0, 1):
        if values.shape[axis] < 3:
            continue
        before = np.take(values, range(0, values.shape[axis] - 2), axis=axis)
        middle = np.take(values, range(1, values.shape[axis] - 1), axis=axis)
        after = np.take(values, range(2, values.shape[axis]), axis=axis)
        inside = ((np.minimum(before, after) <= middle) & (middle <= np.maximum(before, after))).all(axis=2)
        between = inside & (middle != before).any(axis=2) & (middle != after).any(axis=2)
        if axis == 0:
            ramp[1:-1] |= between
        else:
            ramp[:, 1:-1] |= between
    return ramp
