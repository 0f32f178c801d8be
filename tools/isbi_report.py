"""ISBI 2012 figures of a checkpoint on held-out slices: pixel error, Rand error, mean_iu.

    python tools/isbi_report.py runs/isbi-u-net/best.pth
    python tools/isbi_report.py CKPT --split val --data-root DIR --json isbi.json
    python tools/isbi_report.py CKPT --seed-threshold 0.8 --pixel-threshold 0.2   # no tuning pass

Inference uses the checkpoint's validation settings (sliding window and mirror
margin of train/isbi-u-net/train.py) unless --mode / --tile / --stride /
--mirror-margin override them. Figures, over the held-out slices (25..29 for
split 'val'), each twice: of the network's argmax, and after thresholds chosen on
the training slices (--tune-split; or given) are applied to its cell probability
(utils/cell_segments.py):
- pixel error: the fraction of pixels whose class (membrane / cell) is wrong,
  pooled over the slices (= 1 - acc); then with cell where the probability
  exceeds --pixel-threshold;
- Rand error: the challenge's foreground-restricted Rand error 1 - V_rand, with
  the slices' sums pooled (utils/metrics.RandScore states the conventions),
  also per slice; of the argmax map's connected components, then of the filled
  segments (seeds where the probability exceeds --seed-threshold, every other
  pixel joined to its nearest seed);
- mean_iu (and acc, acc_cls) from the confusion matrix, as eval.py reports them.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse
import json
from typing import Callable

from utils.cli import add_inference_args, check_inference_args, inference_overrides
from utils.predictor import Predictor
from utils.cell_segments import THRESHOLDS, best_threshold, filled_rand_error, thresholded_pixel_error
from utils.metrics import RandScore, rand_error


def split_figures(predictor: Predictor, split: str, data_root: str | None, foreground: int) -> dict:
    """Confusion-matrix metrics, the class map's Rand error (pooled and per slice), and the cell
    probabilities and masks (for the filled segments) of every slice of `split`."""
    dataset = predictor.dataset(split, data_root)
    pooled = RandScore(foreground)
    per_slice, probabilities, masks = [], [], []

    def on_batch(index, images, targets, predictions, logits):
        for prediction, target, cell in zip(predictions.cpu(), targets.cpu(),
                                            logits.float().softmax(1)[:, foreground].cpu()):
            pooled.update(prediction, target)
            per_slice.append(rand_error(prediction, target, foreground))
            probabilities.append(cell.numpy())
            masks.append(target.numpy())

    metrics = predictor.evaluate(predictor.loader(dataset, batch_size=1), dataset.ignore_index, on_batch=on_batch)
    return {"metrics": metrics, "rand": pooled.compute(), "per_slice": per_slice,
            "names": [dataset.sample_name(i) for i in range(len(dataset))],
            "probabilities": probabilities, "masks": masks}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="val", help="held-out split (default: val, slices 25..29)")
    parser.add_argument("--data-root", default=None, help="the ISBI folder (default: the checkpoint's)")
    parser.add_argument("--foreground", type=int, default=1, help="the cell class (ISBI: 1)")
    parser.add_argument("--seed-threshold", type=float, default=None,
                        help="cell probability above which pixels seed the filled segments of the second Rand "
                             f"error (default: the one of {', '.join(map(str, THRESHOLDS))} with the lowest "
                             "Rand error on --tune-split)")
    parser.add_argument("--pixel-threshold", type=float, default=None,
                        help="cell probability above which a pixel is cell, for the second pixel error "
                             "(default: the one with the lowest pixel error on --tune-split)")
    parser.add_argument("--tune-split", default="train",
                        help="split the thresholds are chosen on (default: train, slices 0..24)")
    add_inference_args(parser, exclude=("batch_size",))  # one slice at a time
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    check_inference_args(parser, args)
    for flag in ("seed_threshold", "pixel_threshold"):
        value = getattr(args, flag)
        if value is not None and not 0 <= value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be in [0, 1), got {value}")
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, "isbi_report.py",
                                          **inference_overrides(args))
    state, inference = predictor.checkpoint, predictor.settings

    def figures(split: str) -> dict:
        return split_figures(predictor, split, args.data_root, args.foreground)

    held_out = figures(args.split)
    probabilities, masks, foreground = held_out["probabilities"], held_out["masks"], args.foreground

    def rand_at(images: dict) -> Callable[[float], float]:
        return lambda t: filled_rand_error(images["probabilities"], images["masks"], t, foreground)

    def pixel_at(images: dict) -> Callable[[float], float]:
        return lambda t: thresholded_pixel_error(images["probabilities"], images["masks"], t, foreground)

    seed, pixel = args.seed_threshold, args.pixel_threshold
    tuned_rand, tuned_pixel = {}, {}
    if seed is None or pixel is None:
        tuning = figures(args.tune_split)
        if seed is None:
            seed, tuned_rand = best_threshold(rand_at(tuning))
        if pixel is None:
            pixel, tuned_pixel = best_threshold(pixel_at(tuning))
    filled_per_slice = [filled_rand_error([p], [m], seed, foreground) for p, m in zip(probabilities, masks)]
    metrics, rand, names = held_out["metrics"], held_out["rand"], held_out["names"]
    report = {"checkpoint": str(args.checkpoint), "split": args.split, "slices": names,
              "pixel_error": 1 - metrics["acc"], "rand_error": rand["rand_error"], "v_rand": rand["v_rand"],
              "rand_error_per_slice": dict(zip(names, held_out["per_slice"])),
              "thresholded": {
                  "pixel_threshold": pixel, "pixel_error": pixel_at(held_out)(pixel),
                  "seed_threshold": seed, "rand_error": rand_at(held_out)(seed),
                  "rand_error_per_slice": dict(zip(names, filled_per_slice)),
                  "chosen_on": args.tune_split if tuned_rand or tuned_pixel else None,
                  "tune_pixel_errors": {str(t): e for t, e in tuned_pixel.items()},
                  "tune_rand_errors": {str(t): e for t, e in tuned_rand.items()}},
              "mean_iu": metrics["mean_iu"], "acc": metrics["acc"], "acc_cls": metrics["acc_cls"],
              "iou": metrics["iou"],
              "inference": {"mode": inference.mode, "tile": inference.tile, "stride": inference.stride,
                            "mirror_margin": inference.mirror_margin}}
    thresholded = report["thresholded"]

    def origin(threshold: float, tuned: dict) -> str:
        if not tuned:
            return f"threshold {threshold} given"
        return (f"threshold {threshold} chosen on {args.tune_split}: "
                + ", ".join(f"{t} {e:.4f}" for t, e in tuned.items()))

    print(f"{state['model']} on {state['dataset']} {args.split} (slices {', '.join(names)}; {inference.mode}, "
          f"mirror margin {inference.mirror_margin}), iteration {state.get('iteration')}")
    print(f"{'pixel error':<14}{report['pixel_error']:.4f}   (argmax)")
    print(f"{'pixel error':<14}{thresholded['pixel_error']:.4f}   (cell where probability > "
          f"{origin(pixel, tuned_pixel)})")
    print(f"{'Rand error':<14}{report['rand_error']:.4f}   (the argmax map's components; per slice: "
          + ", ".join(f"{n} {e:.4f}" for n, e in zip(names, held_out["per_slice"])) + ")")
    print(f"{'Rand error':<14}{thresholded['rand_error']:.4f}   (filled segments, seed {origin(seed, tuned_rand)}; "
          "per slice: " + ", ".join(f"{n} {e:.4f}" for n, e in zip(names, filled_per_slice)) + ")")
    print(f"{'mean_iu':<14}{metrics['mean_iu']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
