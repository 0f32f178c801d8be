"""Segment any images with a checkpoint.

    python predict.py runs/shapes-u-net/best.pth photo.jpg more_images/ --out predictions/

Writes, for each input image NAME.ext, NAME.png (a palette PNG of class ids at
the image's own size) and NAME_overlay.png (the colours blended over the
image); with --probs also NAME.npy, the float16 softmax probabilities
(classes, H, W) at the image's own size, whose argmax NAME.png is
(utils/probability_maps.py; for two classes with a --threshold other than 0.5, class 1
where its probability exceeds it). Folders are searched recursively and their subfolders are mirrored
under --out (Cityscapes' leftImg8bit/test/<city>/ gives <out>/<city>/).
Inference options are those of eval.py (--mode, --tile, --stride, --tile-batch,
--base-size, --scales, --flip, --mirror-margin, --protocol, --long-side, --threshold, --device,
--amp, --channels-last); by default the checkpoint's validation settings, input
normalisation and precision.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.base import DatasetError, read_image
from datasets.pairing import IMAGE_SUFFIXES  # the formats the folder data set reads
from utils.cli import add_inference_args, check_inference_args, inference_overrides
from utils.inference import predicted_classes
from utils.predictor import Predictor
from utils.probability_maps import classes_of_probabilities, float16_probabilities, save_probabilities
from utils.visualize import overlay, progress_bar, save_palette_png


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="folder for the predictions")
    parser.add_argument("--no-overlay", action="store_true", help="write only the palette PNGs")
    parser.add_argument("--probs", action="store_true",
                        help="also write NAME.npy: float16 softmax probabilities (classes, H, W) at the image's size")
    add_inference_args(parser, exclude=("batch_size",))  # one image at a time: each at its own size
    args = parser.parse_args(argv)
    check_inference_args(parser, args)
    return args


def collect_images(inputs: list[str], out_dir: Path | None = None) -> list[tuple[Path, Path]]:
    """(image file, output path without suffix relative to --out) for every input image.

    A file is written as its own stem; a folder's images (searched recursively,
    skipping `out_dir` should it lie inside) keep their subfolder below that folder.
    """
    skip = out_dir.resolve() if out_dir is not None else None
    found: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not (skip is not None and p.resolve().is_relative_to(skip)))
            found += [(p, p.relative_to(item).with_suffix("")) for p in files]
        elif item.is_file():
            found.append((item, Path(item.stem)))
        else:
            raise SystemExit(f"predict.py: input {item} is neither an image file nor a folder")
    if not found:
        raise SystemExit(f"predict.py: no images ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(inputs)}")
    clashes = sorted(name for name, count in Counter(str(name) for _, name in found).items() if count > 1)
    if clashes:
        raise SystemExit(f"predict.py: several inputs would be written as {clashes[0]}.png; pass them separately "
                         f"or rename them")
    return found


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, "predict.py", **inference_overrides(args))
    palette = predictor.palette
    out_dir = Path(args.out)
    paths = collect_images(args.inputs, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    bar = progress_bar(len(paths), "predict", bars=args.progress)
    for path, name in paths:
        try:
            image = read_image(path)
        except DatasetError as err:
            raise SystemExit(f"predict.py: {err}") from None
        logits = predictor.segment(image)
        probabilities = float16_probabilities(logits, predictor.settings.protocol) if args.probs else None
        # With --probs the PNG is read from the saved probabilities, so that the two agree.
        prediction = (classes_of_probabilities(probabilities, predictor.settings.threshold) if args.probs
                      else predicted_classes(logits, predictor.settings)[0].cpu().numpy()).astype(np.uint8)
        target = out_dir / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_palette_png(prediction, palette, target)
        if args.probs:
            save_probabilities(probabilities, out_dir / f"{name}.npy")
        if not args.no_overlay:
            rgb = image.permute(1, 2, 0).numpy()
            Image.fromarray(overlay(rgb, prediction, palette)).save(out_dir / f"{name}_overlay.png")
        written.append(target)
        bar.update(1)
    bar.close()
    print(f"wrote {len(written)} prediction(s) to {out_dir}")
    return written


if __name__ == "__main__":
    main()
