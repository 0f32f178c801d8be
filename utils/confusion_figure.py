"""The confusion matrix as a picture: which classes are taken for which (eval.py --confusion, TensorBoard).

Rows are the ground truth, columns the prediction, and each row is normalised to sum to 1,
so a cell reads "this share of the pixels of class <row> was predicted as <column>" and the
diagonal is each class's recall (acc_cls is its mean). A class without labelled pixels has
an empty (grey) row. Drawn with Pillow alone (no plotting library), with class names on
both axes and the percentage in each cell where it fits.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

EMPTY_ROW = (200, 200, 200)
LOW, HIGH = np.array([255, 255, 255], dtype=np.float32), np.array([8, 48, 107], dtype=np.float32)


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; rows without pixels stay NaN."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / totals, np.nan)


def confusion_image(counts: np.ndarray | Sequence[Sequence[int]], classes: Sequence[str]) -> Image.Image:
    """An RGB picture of the row-normalised confusion matrix of `counts` (rows: truth)."""
    shares = row_normalised(counts)
    n = shares.shape[0]
    if shares.shape != (n, n) or len(classes) != n:
        raise ValueError(f"a {n} x {n} confusion matrix needs {n} class names, got {len(classes)} and shape "
                         f"{shares.shape}")
    cell = int(np.clip(900 // max(n, 1), 12, 56))
    font = ImageFont.load_default(size=max(10, min(15, cell // 2)))
    names = [str(name) for name in classes]
    label = max(int(font.getlength(name)) for name in names) + 10
    titles = ["confusion matrix: rows are the ground truth, columns the prediction",
              "percent of each row (the diagonal is each class's recall)"]
    title_height = 10 + len(titles) * (font.size + 6)
    top, left = title_height + label, label + 20  # column names stand above the grid, turned
    width = max(left + n * cell + 10, 20 + int(max(font.getlength(t) for t in titles)))
    height = top + n * cell + 10
    picture = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    for k, title in enumerate(titles):
        draw.text((10, 6 + k * (font.size + 6)), title, fill="black", font=font)
    for i, name in enumerate(names):
        y = top + i * cell + (cell - font.size) // 2
        draw.text((left - 8 - font.getlength(name), y), name, fill="black", font=font)
        column = _turned_text(name, font, label)
        picture.paste(column, (left + i * cell + (cell - column.width) // 2, title_height))
    show_numbers = font.getlength("100") + 4 <= cell
    for i in range(n):
        for j in range(n):
            box = [left + j * cell, top + i * cell, left + (j + 1) * cell - 1, top + (i + 1) * cell - 1]
            share = shares[i, j]
            if np.isnan(share):
                draw.rectangle(box, fill=EMPTY_ROW)
                continue
            colour = tuple(int(c) for c in np.round(LOW + (HIGH - LOW) * share))
            draw.rectangle(box, fill=colour)
            if show_numbers and share >= 0.005:
                text = f"{100 * share:.0f}"
                ink = "white" if share > 0.5 else "black"
                draw.text((box[0] + (cell - font.getlength(text)) / 2, box[1] + (cell - font.size) / 2), text,
                          fill=ink, font=font)
    draw.rectangle([left - 1, top - 1, left + n * cell, top + n * cell], outline="black")
    return picture


def _turned_text(text: str, font: ImageFont.FreeTypeFont, length: int) -> Image.Image:
    """`text` written bottom to top, right-aligned at the bottom of a `length`-high strip."""
    strip = Image.new("RGB", (length, font.size + 4), "white")
    ImageDraw.Draw(strip).text((length - 4 - font.getlength(text), 1), text, fill="black", font=font)
    return strip.rotate(90, expand=True)


def save_confusion_png(counts: np.ndarray | Sequence[Sequence[int]], classes: Sequence[str],
                       path: str | os.PathLike) -> None:
    confusion_image(counts, classes).save(path)


def check_confusion_path(parser: argparse.ArgumentParser, path: str | None) -> None:
    """--confusion FILE.png: a usage error, before any work, for another suffix or a missing folder."""
    if path is None:
        return
    if Path(path).suffix.lower() != ".png":
        parser.error(f"--confusion {path}: expected a file name ending in .png")
    if not Path(path).resolve().parent.is_dir():
        parser.error(f"--confusion {path}: the folder {Path(path).resolve().parent} does not exist")
