"""A results picture from a checkpoint: image | ground truth | prediction, one row per image.

    python tools/results_figure.py runs/camvid-seg-net/best.pth --out docs/camvid.png --num 3
    python tools/results_figure.py CKPT --out fig.png --indices 0 17 42 --split val --data-root DIR

Images come from the checkpoint's validation split (or --split), predictions from the
checkpoint's validation settings (whole / sliding window, base size, mirror margin);
ground truth and prediction are drawn in the data set's palette (ignore pixels white),
at the labels' resolution. Rows are the first --num images, or --indices.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import datasets
from utils.engine import pick_device
from utils.inference import InferenceConfig, predict_logits
from utils.inference_cli import load_for_inference
from utils.joint_transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms
from utils.visualize import colorize, denormalize


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--num", type=int, default=3, help="the first N images of the split")
    parser.add_argument("--indices", type=int, nargs="+", default=None, help="these images instead")
    parser.add_argument("--split", default=None, help="default: the checkpoint's val split")
    parser.add_argument("--data-root", default=None, help="default: the checkpoint's")
    parser.add_argument("--gap", type=int, default=4, help="white pixels between panels")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    state, model = load_for_inference(args.checkpoint, device)
    cfg = state["config"]
    dataset = datasets.build_dataset(state["dataset"], args.split or cfg["val_split"],
                                     args.data_root or cfg["data_root"], eval_transforms(cfg["val_base_size"] or None),
                                     **state["dataset_kwargs"])
    indices = args.indices if args.indices is not None else list(range(min(args.num, len(dataset))))
    bad = [i for i in indices if not 0 <= i < len(dataset)]
    if bad or not indices:
        raise SystemExit(f"results_figure.py: indices {bad or indices} outside 0..{len(dataset) - 1}")
    inference = InferenceConfig(mode=cfg["val_mode"], tile=cfg["val_tile"], stride=cfg["val_stride"],
                                mirror_margin=cfg.get("val_mirror_margin", 0))
    palette = state["palette"]
    rows = []
    for index in indices:
        image, mask = dataset[index]
        image = image.as_subclass(torch.Tensor)[None].to(device)
        mask = mask.as_subclass(torch.Tensor)
        logits = predict_logits(model, image, state["num_classes"], inference, size=mask.shape[-2:])
        if image.shape[-2:] != mask.shape[-2:]:  # a validation base size: show everything at the labels' size
            image = F.interpolate(image, size=mask.shape[-2:], mode="bilinear", align_corners=False)
        prediction = logits.argmax(1)[0].cpu()
        panels = [denormalize(image[0].cpu(), IMAGENET_MEAN, IMAGENET_STD), colorize(mask, palette),
                  colorize(prediction, palette)]
        rows.append([p.permute(1, 2, 0).numpy() for p in panels])
    height = max(r[0].shape[0] for r in rows)
    width = max(r[0].shape[1] for r in rows)
    g = args.gap
    canvas = np.full((len(rows) * (height + g) - g, 3 * (width + g) - g, 3), 255, dtype=np.uint8)
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            y, x = r * (height + g), c * (width + g)
            canvas[y:y + panel.shape[0], x:x + panel.shape[1]] = panel
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(out)
    print(f"wrote {out}: image | ground truth | prediction for {state['dataset']} images {indices}")
    return out


if __name__ == "__main__":
    main()
