"""Segment any images with a checkpoint.

    python predict.py runs/shapes-u-net/best.pth photo.jpg more_images/ --out predictions/

Writes, for each input image NAME.ext, NAME.png (a palette PNG of class ids at
the image's own size) and NAME_overlay.png (the colours blended over the
image). Inference options are those of eval.py.
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
    parser.add_argument("--mode", choices=("whole", "slide"), default=None)
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--base-size", type=int, default=None,
                        help="run the model with the shorter side resized to this (0: off)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0])
    parser.add_argument("--flip", action="store_true")
    parser.add_argument("--tile-batch", type=int, default=4)
    parser.add_argument("--no-overlay", action="store_true", help="write only the palette PNGs")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return parser.parse_args(argv)


def collect_images(inputs: list[str]) -> list[Path]:
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise SystemExit(f"predict.py: input {item} is neither an image file nor a folder")
    if not paths:
        raise SystemExit(f"predict.py: no images ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(inputs)}")
    return paths


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    try:
        state = load_checkpoint(args.checkpoint)
    except CheckpointError as err:
        raise SystemExit(str(err)) from None
    cfg = state["config"]
    inference = InferenceConfig(mode=args.mode or cfg["val_mode"], tile=args.tile or cfg["val_tile"],
                                stride=args.stride or cfg["val_stride"], batch_size=args.tile_batch,
                                scales=tuple(args.scales), flip=args.flip)
    try:
        inference.validate()
    except ValueError as err:
        raise SystemExit(f"predict.py: {err}") from None
    base_size = cfg["val_base_size"] if args.base_size is None else args.base_size
    paths = collect_images(args.inputs)
    device = pick_device(args.device)
    model = model_from_checkpoint(state).to(device).eval()
    normalise = eval_transforms()
    resize = ResizeShorterSide(base_size) if base_size else None
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
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
        target = out_dir / f"{path.stem}.png"
        save_palette_png(prediction, state["palette"], target)
        if not args.no_overlay:
            rgb = image.permute(1, 2, 0).numpy()
            Image.fromarray(overlay(rgb, prediction, state["palette"])).save(out_dir / f"{path.stem}_overlay.png")
        written.append(target)
    print(f"wrote {len(written)} prediction(s) to {out_dir}")
    return written


if __name__ == "__main__":
    main()
