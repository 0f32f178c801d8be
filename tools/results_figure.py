"""A results picture from one or more checkpoints: image | ground truth | prediction of each.

    python tools/results_figure.py runs/camvid-seg-net/best.pth --out docs/camvid.png --num 3
    python tools/results_figure.py A.pth B.pth C.pth --out compare.png --indices 0 17 42

One row per image, one column per checkpoint after the image and its ground truth, and a
title strip naming the columns. Images come from the first checkpoint's validation split
(or --split); each checkpoint predicts with its own validation settings (whole / sliding
window, base size, mirror margin), which eval.py's inference flags override. Ground truth
and predictions are drawn in the data set's palette at the labels' resolution; pixels the
metrics ignore are white in both (void labels, outside a region of interest such as DRIVE's
field of view), so the picture shows what is scored. Rows are the first --num images, or
--indices. Several checkpoints must share one data set.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw

from models.layers import resize
from utils.cli import add_inference_args, check_inference_args, inference_overrides
from utils.inference import predicted_classes
from utils.predictor import Predictor
from utils.visualize import colorize

TITLE_HEIGHT = 14  # pixels of the title strip: PIL's default bitmap font is 11 pixels high


def column_title(state: dict) -> str:
    """'u_net' or 'fcn8s (vgg16)': the checkpoint's model, and its backbone when it has one."""
    backbone = state["config"].get("backbone")
    return f"{state['model']} ({backbone})" if backbone else state["model"]


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", metavar="checkpoint")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--num", type=int, default=3, help="the first N images of the split")
    parser.add_argument("--indices", type=int, nargs="+", default=None, help="these images instead")
    parser.add_argument("--split", default=None, help="default: the first checkpoint's val split")
    parser.add_argument("--data-root", default=None, help="default: the first checkpoint's")
    parser.add_argument("--gap", type=int, default=4, help="white pixels between panels")
    add_inference_args(parser, exclude=("batch_size",))  # one image at a time
    args = parser.parse_args(argv)
    check_inference_args(parser, args)
    predictors = [Predictor.from_checkpoint(path, args.device, "results_figure.py", **inference_overrides(args))
                  for path in args.checkpoints]
    first = predictors[0].checkpoint
    for path, predictor in zip(args.checkpoints[1:], predictors[1:]):
        state = predictor.checkpoint
        if (state["dataset"], state["num_classes"]) != (first["dataset"], first["num_classes"]):
            raise SystemExit(f"results_figure.py: {path} is {state['dataset']} with {state['num_classes']} classes, "
                             f"but {args.checkpoints[0]} is {first['dataset']} with {first['num_classes']}: "
                             "one picture compares checkpoints of one data set")
    split = args.split or first["config"]["val_split"]
    data_root = args.data_root or first["config"]["data_root"]
    # each checkpoint sees the images at its own validation base size; the labels stay full size
    columns = [(predictor, predictor.dataset(split, data_root)) for predictor in predictors]
    size = len(columns[0][1])
    indices = args.indices if args.indices is not None else list(range(min(args.num, size)))
    bad = [i for i in indices if not 0 <= i < size]
    if bad or not indices:
        raise SystemExit(f"results_figure.py: indices {bad or indices} outside 0..{size - 1}")
    palette = first["palette"]
    rows = []
    for index in indices:
        panels = []
        for column, (predictor, dataset) in enumerate(columns):
            image, mask = (t.as_subclass(torch.Tensor) for t in dataset[index])
            if column == 0:  # the image at the labels' size, whatever base size the model saw
                shown = resize(image[None].float(), mask.shape[-2:])[0]
                panels += [predictor.input_norm.denormalize(shown), colorize(mask, palette)]
            logits = predictor.logits(image[None], size=mask.shape[-2:])
            prediction = predicted_classes(logits, predictor.settings)[0].cpu()
            # pixels the metrics ignore (void labels, outside a region of interest) are drawn as the truth draws them
            prediction[mask == dataset.ignore_index] = dataset.ignore_index
            panels.append(colorize(prediction, palette))
        rows.append([p.permute(1, 2, 0).numpy() for p in panels])
    titles = ["image", "ground truth"] + [column_title(predictor.checkpoint) for predictor in predictors]
    canvas = tile_panels(rows, titles, args.gap)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    print(f"wrote {out}: {' | '.join(titles)} for {first['dataset']} {split} images {indices}")
    return out


def tile_panels(rows: list[list[np.ndarray]], titles: list[str], gap: int) -> np.ndarray:
    """A white uint8 canvas: a title strip, then the [H, W, 3] panels in a grid `gap` pixels apart."""
    height = max(p.shape[0] for r in rows for p in r)
    width = max(p.shape[1] for r in rows for p in r)
    canvas = np.full((TITLE_HEIGHT + len(rows) * (height + gap) - gap, len(titles) * (width + gap) - gap, 3),
                     255, dtype=np.uint8)
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            y, x = TITLE_HEIGHT + r * (height + gap), c * (width + gap)
            canvas[y:y + panel.shape[0], x:x + panel.shape[1]] = panel
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for c, title in enumerate(titles):
        draw.text((c * (width + gap) + 2, 1), title, fill=(0, 0, 0))
    return np.asarray(picture)


if __name__ == "__main__":
    main()
