"""Evaluate a checkpoint on a labelled split.

    python eval.py runs/shapes-u-net/best.pth
    python eval.py CKPT --split val --mode slide --tile 512 --stride 341 --scales 0.75 1.0 1.25 --flip \
        --save-dir preds/ --json metrics.json

The model, data set, input normalisation, validation settings and precision
(--amp, --channels-last) come from the checkpoint, so eval.py reproduces the
run's own validation figures; flags override them. Each inference flag is the
training flag without its "val-" (--tile is the run's --val-tile, --scales its
--val-scales; utils/inference_settings.py). Prints acc, acc_cls, mean_iu,
fwavacc, mean_dice and a per-class IoU and Dice table; for two-class data sets
also sensitivity, specificity, precision, F1, ROC AUC and average precision of
class 1 (utils/binary_metrics.py), and the threshold on class 1's probability
that would give these images their best F1 (run it on the training split to
choose a --threshold).
Metrics are always computed against the original-resolution labels: with
--base-size the images are resized for the model and its logits resized back
(with the model's own align_corners convention).
--protocol semseg is the test of PSPNet's authors (hszhao/semseg), under which
their published figures were measured: e.g. for VOC 2012 and ADE20K
`--protocol semseg --long-side 512 --tile 473`, for Cityscapes
`--protocol semseg --long-side 2048 --tile 713` (see utils/inference.py); it takes
no --base-size (give --base-size 0 where the checkpoint has one).

Runs on the GPU when there is one (--device). Images are batched (--batch-size;
1 for data sets whose images differ in size). Memory: whole-image inference
holds one batch at each scale (a 1024 x 2048 Cityscapes image at scale 1.75 is
a 1792 x 3584 input), so for large images use --mode slide, where at most
--tile-batch tiles of --tile x --tile pixels go through the model at once at
any scale, and only the logits of the image itself are kept.

Splits without labels (Cityscapes test) cannot be evaluated: segment them with
predict.py and submit the predictions to the benchmark's server.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from utils.binary_metrics import BINARY_KEYS
from utils.cli import add_inference_args, check_inference_args, inference_overrides, parse_json_object
from utils.confusion_figure import check_confusion_path, save_confusion_png
from utils.predictor import Predictor
from utils.visualize import overlay, save_palette_png


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a last.pth or best.pth written by a training script")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the checkpoint's val split)")
    parser.add_argument("--data-root", default=None, help="data set folder (default: the checkpoint's)")
    parser.add_argument("--dataset-kwargs", type=parse_json_object, default=None, metavar="JSON",
                        help="data set options replacing the checkpoint's of the same name, e.g. another "
                             "half of a folder data set: '{\"images\": \"test/images\", ...}'")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    add_inference_args(parser)
    parser.add_argument("--save-dir", default=None, help="write palette PNG predictions and overlays here")
    parser.add_argument("--json", default=None, help="write the metrics (and the raw confusion counts) to this JSON file")
    parser.add_argument("--confusion", default=None, metavar="FILE.png",
                        help="draw the row-normalised confusion matrix with class names into this PNG")
    args = parser.parse_args(argv)
    check_inference_args(parser, args)
    check_confusion_path(parser, args.confusion)
    return args


def format_table(metrics: dict, classes: list[str]) -> str:
    """Per-class IoU and Dice (F1); 'n/a' for a class absent from both labels and predictions."""
    lines = [f"{'class':<24}{'IoU':>8}{'Dice':>8}"]
    for name, iou, dice in zip(classes, metrics["iou"], metrics["dice"]):
        cells = ["n/a" if value != value else f"{value:.4f}" for value in (iou, dice)]  # NaN: absent class
        lines.append(f"{name:<24}{cells[0]:>8}{cells[1]:>8}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, "eval.py", **inference_overrides(args))
    print(predictor.describe())
    state, inference = predictor.checkpoint, predictor.settings
    split = args.split or predictor.train_config["val_split"]
    dataset = predictor.dataset(split, args.data_root, args.dataset_kwargs)
    if not getattr(dataset, "has_labels", True):
        # Cityscapes keeps images in one subfolder per city: name the split's folder.
        folder = Path(dataset.samples[0][0]).parent.parent if len(dataset) else "IMAGE_FOLDER"
        raise SystemExit(f"eval.py: the {state['dataset']} {split!r} split has no labels (they are withheld by "
                         f"the benchmark), so there is nothing to score. Segment it with predict.py instead, "
                         f"e.g. `python predict.py {args.checkpoint} {folder} --out predictions/` "
                         f"(folders are searched recursively), and submit the result to the benchmark's server.")
    loader = predictor.loader(dataset, args.workers)

    on_batch = None
    if args.save_dir:
        save_dir = Path(args.save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        names = [dataset.sample_name(i) for i in range(len(dataset))]
        palette, norm = predictor.palette, predictor.input_norm
        seen = [0]

        def save_batch(index, images, targets, predictions, logits):
            for image, prediction in zip(images, predictions):
                name = names[seen[0]]
                seen[0] += 1
                pred = prediction.cpu().numpy().astype(np.uint8)
                save_palette_png(pred, palette, save_dir / f"{name}.png")
                rgb = norm.denormalize(image).permute(1, 2, 0).cpu().numpy()
                Image.fromarray(overlay(rgb, pred, palette)).save(save_dir / f"{name}_overlay.png")

        on_batch = save_batch

    metrics = predictor.evaluate(loader, dataset.ignore_index, on_batch=on_batch, progress=True,
                                 progress_bars=args.progress)
    settings = [inference.mode, f"scales {list(inference.scales)}"] + ["flip"] * inference.flip
    if inference.protocol == "semseg":  # the authors' test: always crops, always the mirror image
        settings = [f"semseg protocol: long side {inference.long_side or 'as is'}, crops {inference.tile} at "
                    f"stride {inference.stride}, flip", f"scales {list(inference.scales)}"]
    if predictor.autocast_dtype is not None:
        settings.append(f"amp {str(predictor.autocast_dtype).split('.')[-1]}")
    settings += ["channels_last"] * inference.channels_last
    print(f"{state['model']} on {state['dataset']} {split} ({len(dataset)} images, {', '.join(settings)})")
    for key in ("acc", "acc_cls", "mean_iu", "fwavacc"):
        print(f"{key:<8} {metrics[key]:.4f}")
    print(f"mean_dice {metrics['mean_dice']:.4f}")
    for key in BINARY_KEYS * ("roc_auc" in metrics):  # two-class data sets: figures of class 1
        print(f"{key:<17} {metrics[key]:.4f}")
    if "best_f1" in metrics:
        print(f"threshold        {inference.threshold:g} on class 1's probability (--threshold); the best F1 of "
              f"any threshold on these images: {metrics['best_f1']:.4f} at {metrics['best_f1_threshold']:.3f} "
              f"(chosen on the pixels it scores: pick a threshold on training images, not the ones you report)")
    print(format_table(metrics, state["classes"]))
    if args.json:
        record = {"checkpoint": str(args.checkpoint), "split": split, "classes": state["classes"],
                  "mode": inference.mode,
                  "protocol": inference.protocol,
                  "scales": list(inference.scales), "flip": inference.flip, "threshold": inference.threshold,
                  **metrics,
                  "iou_per_class": dict(zip(state["classes"], metrics["iou"])),
                  "dice_per_class": dict(zip(state["classes"], metrics["dice"]))}
        Path(args.json).write_text(json.dumps(record, indent=2))
    if args.confusion:
        save_confusion_png(metrics["confusion"], state["classes"], args.confusion)
        print(f"confusion matrix (rows: ground truth, normalised) -> {args.confusion}")
    return metrics


if __name__ == "__main__":
    main()
