"""ISBI 2012 figures of a checkpoint on held-out slices: pixel error, Rand error, mean_iu.

    python tools/isbi_report.py runs/isbi-u-net/best.pth
    python tools/isbi_report.py CKPT --split val --data-root DIR --json isbi.json

Inference uses the checkpoint's validation settings (sliding window and mirror
margin of train/isbi-u-net/train.py) unless --mode / --tile / --stride /
--mirror-margin override them. Figures, over the held-out slices (25..29 for
split 'val'):
- pixel error: the fraction of pixels whose class (membrane / cell) is wrong,
  pooled over the slices (= 1 - acc);
- Rand error: the challenge's foreground-restricted Rand error 1 - V_rand, with
  the slices' sums pooled (utils/metrics.RandScore states the conventions),
  also per slice;
- mean_iu (and acc, acc_cls) from the confusion matrix, as eval.py reports them.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse
import json

import datasets
from utils.cli import (add_inference_args, base_size, check_inference_args, inference_config, input_norm,
                       load_for_inference, precision)
from utils.data import eval_loader
from utils.runtime import pick_device
from utils.inference import evaluate
from utils.transforms import eval_transforms
from utils.metrics import RandScore, rand_error


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--split", default="val", help="held-out split (default: val, slices 25..29)")
    parser.add_argument("--data-root", default=None, help="the ISBI folder (default: the checkpoint's)")
    parser.add_argument("--foreground", type=int, default=1, help="the cell class (ISBI: 1)")
    add_inference_args(parser)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    check_inference_args(parser, args)
    device = pick_device(args.device)
    state, model = load_for_inference(args.checkpoint, device)
    cfg = state["config"]
    inference = inference_config(args, cfg, "isbi_report.py")
    channels_last, amp_dtype = precision(args, cfg, device, model)
    dataset = datasets.build_dataset(state["dataset"], args.split, args.data_root or cfg["data_root"],
                                     eval_transforms(base_size(args, cfg) or None, input_norm(state)),
                                     **state["dataset_kwargs"])
    pooled = RandScore(args.foreground)
    per_slice: list[float] = []

    def on_batch(index, images, targets, predictions):
        for prediction, target in zip(predictions.cpu(), targets.cpu()):
            pooled.update(prediction, target)
            per_slice.append(rand_error(prediction, target, args.foreground))

    metrics = evaluate(model, eval_loader(dataset, 1, 0, False), state["num_classes"], device, inference,
                       dataset.ignore_index, on_batch=on_batch, channels_last=channels_last,
                       autocast_dtype=amp_dtype)
    rand = pooled.compute()
    names = [dataset.sample_name(i) for i in range(len(dataset))]
    report = {"checkpoint": str(args.checkpoint), "split": args.split, "slices": names,
              "pixel_error": 1 - metrics["acc"], "rand_error": rand["rand_error"], "v_rand": rand["v_rand"],
              "rand_error_per_slice": dict(zip(names, per_slice)), "mean_iu": metrics["mean_iu"],
              "acc": metrics["acc"], "acc_cls": metrics["acc_cls"], "iou": metrics["iou"],
              "inference": {"mode": inference.mode, "tile": inference.tile, "stride": inference.stride,
                            "mirror_margin": inference.mirror_margin}}
    print(f"{state['model']} on {state['dataset']} {args.split} (slices {', '.join(names)}; {inference.mode}, "
          f"mirror margin {inference.mirror_margin}), iteration {state.get('iteration')}")
    print(f"{'pixel error':<14}{report['pixel_error']:.4f}")
    print(f"{'Rand error':<14}{report['rand_error']:.4f}   (per slice: "
          + ", ".join(f"{n} {e:.4f}" for n, e in zip(names, per_slice)) + ")")
    print(f"{'mean_iu':<14}{metrics['mean_iu']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
