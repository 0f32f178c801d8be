"""Segment any images with a checkpoint.

    python predict.py runs/shapes-u-net/best.pth photo.jpg more_images/ --out predictions/

Writes, for each input image NAME.ext, NAME.png (a palette PNG of class ids at
the image's own size) and NAME_overlay.png (the colours blended over the
image). Folders are searched recursively and their subfolders are mirrored
under --out (Cityscapes' leftImg8bit/test/<city>/ gives <out>/<city>/).
Inference options are those of eval.py (--mode, --tile, --stride, --tile-batch,
--base-size, --scales, --flip, --device); by default the checkpoint's
validation settings.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datasets.base import DatasetError, read_image
from utils.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from utils.engine import pick_device
from utils.inference import InferenceConfig, predict_logits
from utils.joint_transforms import ResizeShorterSide, eval_transforms
from utils.visualize import overlay, save_palette_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", required=True, help="folder for the predictions")
    parser.add_argument("--mode", choices=("whole", "slide"), default=None,
                        help="whole-image or sliding-window inference (default: the checkpoint's)")
    parser.add_argument("--tile", type=int, default=None, help="sliding-window tile size")
    parser.add_argument("--stride", type=int, default=None, help="sliding-window stride")
    parser.add_argument("--base-size", type=int, default=None,
                        help="run the model with the shorter side resized to this (0: off)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test-time scales")
    parser.add_argument("--flip", action="store_true", help="also average horizontally flipped predictions")
    parser.add_argument("--mirror-margin", type=int, default=None,
                        help="reflect-pad each image by this many pixels before inference, crop the result back "
                             "(the U-Net paper's overlap-tile; default: the checkpoint's val_mirror_margin)")
    parser.add_argument("--tile-batch", type=int, default=4, help="sliding-window tiles per forward pass")
    parser.add_argument("--no-overlay", action="store_true", help="write only the palette PNGs")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    for name in ("tile", "stride", "tile_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.base_size is not None and args.base_size < 0:
        parser.error(f"--base-size must be >= 0, got {args.base_size}")
    if any(s <= 0 for s in args.scales):
        parser.error(f"--scales must be positive, got {args.scales}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but no CUDA device is available")
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
    names = [str(name) for _, name in found]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise SystemExit(f"predict.py: several inputs would be written as {clashes[0]}.png; pass them separately "
                         f"or rename them")
    return found


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    try:
        state = load_checkpoint(args.checkpoint)
    except CheckpointError as err:
        raise SystemExit(str(err)) from None
    cfg = state["config"]
    inference = InferenceConfig(mode=args.mode or cfg["val_mode"], tile=args.tile or cfg["val_tile"],
                                stride=args.stride or cfg["val_stride"], batch_size=args.tile_batch,
                                scales=tuple(args.scales), flip=args.flip,
                                mirror_margin=cfg.get("val_mirror_margin", 0) if args.mirror_margin is None
                                else args.mirror_margin)
    try:
        inference.validate()
    except ValueError as err:
        raise SystemExit(f"predict.py: {err}") from None
    base_size = cfg["val_base_size"] if args.base_size is None else args.base_size
    out_dir = Path(args.out)
    paths = collect_images(args.inputs, out_dir)
    device = pick_device(args.device)
    model = model_from_checkpoint(state).to(device).eval()
    normalise = eval_transforms()
    resize = ResizeShorterSide(base_size) if base_size else None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, name in paths:
        try:
            image = read_image(path)
        except DatasetError as err:
            raise SystemExit(f"predict.py: {err}") from None
        height, width = image.shape[-2:]
        model_input = resize(image) if resize else image
        batch = normalise(model_input)[None].as_subclass(torch.Tensor).to(device)
        logits = predict_logits(model, batch, state["num_classes"], inference)
        if logits.shape[-2:] != (height, width):
            logits = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear",
                                                     align_corners=False)
        prediction = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        target = out_dir / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_palette_png(prediction, state["palette"], target)
        if not args.no_overlay:
            rgb = image.permute(1, 2, 0).numpy()
            Image.fromarray(overlay(rgb, prediction, state["palette"])).save(out_dir / f"{name}_overlay.png")
        written.append(target)
    print(f"wrote {len(written)} prediction(s) to {out_dir}")
    return written


if __name__ == "__main__":
    main()
