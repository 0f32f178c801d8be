"""Training speed of every registered model: images/s, peak memory, FLOPs utilisation.

    python benchmarks/train_speed.py                                   # every model, default flags sets
    python benchmarks/train_speed.py --models psp_net deeplab_v3 --crop 512 --batch 8 --peak-tflops 989
    python benchmarks/train_speed.py --device cpu --models u_net --flags fp32 compile
    python benchmarks/train_speed.py --device cpu --models u_net --model-kwargs '{"width": 16}' --crop 180 --batch 8

One training step is the engine's own `Trainer.train_step` (utils/engine.py),
through a Trainer built by benchmarks/child.py's `engine_trainer`: the copy to
the device and to channels_last, forward under autocast, the engine's
SegmentationLoss (with the auxiliary term where the model returns one),
backward through GradScaler (fp16) or the NonFiniteGuard, the SGD step (lr
1e-4, momentum 0.9, weight decay 1e-4; fused on CUDA), the poly LR step.
Inputs are random tensors already on the device, so the data loader plays no
part (see data_speed.py for that). Each (model, flags) pair runs in a fresh
process, so peak memory is its own and torch.compile caches do not leak
between rows.

Columns:
- images/s: batch x timed steps / wall time (after warm-up steps; CUDA is
  synchronised before the clock stops).
- vs fp32: images/s over the same model's fp32 row.
- peak MiB: torch.cuda.max_memory_allocated on CUDA; on the CPU, the growth of
  the process's peak resident set over its size just before the model was built
  (the engine's code, with our models and torchvision, already loaded).
- GFLOPs/img: one forward pass of one crop in training mode (auxiliary head
  included), counted by torch.utils.flop_counter.FlopCounterMode (a
  multiply-add is 2 FLOPs; convolutions and matrix products only).
- util: 3 x forward FLOPs (forward + backward ~ 2 x forward) x images/s over
  --peak-tflops, the device's peak for the precision in use (you supply it:
  e.g. H100 SXM dense bf16 ~989, tf32 ~495; a CPU core's fp32 peak is
  cores x GHz x FLOPs/cycle). Left out when no peak is given.

Torchvision comparison: deeplabv3_resnet50 (aux_loss) against our deeplab_v3 at
its torchvision setting (resnet50, output stride 8, aux head), and fcn_resnet50
against our closest network, fcn8s on resnet50 (not the same head: see
tests/test_torchvision_equivalence.py), each with the same flag sets.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import child  # noqa: E402 - benchmarks/, the script's own folder
from child import peak_rss_mib, rss_mib  # noqa: E402

FLAG_SETS = {
    "fp32": {},
    "amp": {"amp": True},
    "channels_last": {"channels_last": True},
    "amp+channels_last": {"amp": True, "channels_last": True},
    "compile": {"compile": True},
    "amp+channels_last+compile": {"amp": True, "channels_last": True, "compile": True},
}
# (label, torchvision builder, its kwargs, our model, our kwargs)
TORCHVISION_PAIRS = [
    ("deeplabv3_resnet50", "deeplabv3_resnet50", {"aux_loss": True},
     "deeplab_v3", {"backbone": "resnet50", "output_stride": 8, "aux": True}),
    ("fcn_resnet50", "fcn_resnet50", {"aux_loss": False}, "fcn8s", {"backbone": "resnet50"}),
]


def build(spec: dict):
    import torchvision

    import models

    if spec["source"] == "torchvision":
        return torchvision.models.get_model(spec["name"], weights=None, weights_backbone=None,
                                            num_classes=spec["classes"], **spec["kwargs"])
    return models.build_model(spec["name"], spec["classes"], pretrained=False, **spec["kwargs"])


def forward_gflops(spec: dict) -> float:
    """Forward FLOPs of one crop in training mode, counted on the meta device when it can."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = build(spec).train()
                x = torch.randn(2, 3, spec["crop"], spec["crop"])  # 2: BatchNorm needs > 1 value
            counter = FlopCounterMode(display=False)
            with counter:
                model(x)
            return counter.get_total_flops() / 2 / 1e9
        except (NotImplementedError, RuntimeError):
            if device == "cpu":
                raise
    raise AssertionError("unreachable")


def measure(spec: dict) -> dict:
    """Run in a child process: time `steps` of the engine's training steps after `warmup` ones."""
    import tempfile

    import torch
    # Loaded before the baseline: the engine's and its TensorBoard writer's code is not the model's memory.
    import torch.utils.tensorboard  # noqa: F401
    import utils.engine  # noqa: F401

    device = torch.device(spec["device"])
    flags = FLAG_SETS[spec["flags"]]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    baseline = rss_mib()
    torch.manual_seed(0)
    network = ({"model_name": spec["name"], "model_kwargs": spec["kwargs"]} if spec["source"] == "ours"
               else {"model": build(spec)})  # ours: the engine builds it from the registry
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = child.engine_trainer(**network, classes=spec["classes"], crop=spec["crop"], batch=spec["batch"],
                                       device=spec["device"], run_dir=run_dir, **flags)
        images = torch.randn(spec["batch"], 3, spec["crop"], spec["crop"], device=device)
        targets = torch.randint(0, spec["classes"], (spec["batch"], spec["crop"], spec["crop"]), device=device)
        try:
            start = time.perf_counter()
            for _ in range(spec["warmup"]):
                trainer.train_step((images, targets))
            sync()
            warmup_s = time.perf_counter() - start
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            for _ in range(spec["steps"]):
                trainer.train_step((images, targets))
            sync()
            elapsed = time.perf_counter() - start
        finally:
            trainer.logger.close()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak = peak_rss_mib() - baseline
    return {"images_per_s": spec["batch"] * spec["steps"] / elapsed, "peak_mib": peak, "warmup_s": warmup_s}


def run_child(spec: dict, timeout: float) -> dict:
    return child.run_child(__file__, spec, timeout)


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table_rows(label: str, backbone: str, spec: dict, flag_sets: list[str], args, gflops: float) -> list[dict]:
    rows = []
    for flags in flag_sets:
        result = run_child({**spec, "flags": flags}, args.timeout)
        rows.append({"label": label, "backbone": backbone, "flags": flags, **result})
        print(f"  {label} [{flags}]: {result}", file=sys.stderr, flush=True)
    base = next((r for r in rows if r["flags"] == "fp32" and "error" not in r), None)
    for row in rows:
        row["gflops"] = gflops
        if "error" in row:
            continue
        row["vs_fp32"] = row["images_per_s"] / base["images_per_s"] if base else None
        row["util"] = (3 * gflops * 1e9 * row["images_per_s"] / (args.peak_tflops * 1e12)
                       if args.peak_tflops else None)
    return rows


def print_rows(rows: list[dict]) -> None:
    print("| model | backbone | flags | images/s | vs fp32 | peak MiB | GFLOPs/img (fwd) | FLOPs util |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['label']} | {r['backbone']} | {r['flags']} | failed: {r['error']} | | | | |")
            continue
        util = "-" if r.get("util") is None else f"{100 * r['util']:.1f}%"
        print(f"| {r['label']} | {r['backbone']} | {r['flags']} | {r['images_per_s']:.2f} | "
              f"{fmt(r.get('vs_fp32'), '.2f')} | {r['peak_mib']:.0f} | {r['gflops']:.2f} | {util} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    import torch

    import models
    from utils.runtime import pick_device

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--models", nargs="+", default=None, choices=models.list_models(), metavar="MODEL",
                        help="subset of registered models (default: all; on the CPU: u_net psp_net)")
    parser.add_argument("--model-kwargs", type=json.loads, default={},
                        help='JSON options for every model of --models, e.g. \'{"width": 16}\' for u_net')
    parser.add_argument("--crop", type=int, default=None, help="square crop side (default: 512 GPU, 128 CPU)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 8 GPU, 2 CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 5 GPU, 1 CPU)")
    parser.add_argument("--flags", nargs="+", default=None, choices=list(FLAG_SETS),
                        help="flag sets to compare (default GPU: all; CPU: all but the compiled ones)")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="device peak in TFLOP/s for the FLOPs-utilisation column")
    parser.add_argument("--no-torchvision", dest="torchvision", action="store_false",
                        help="skip the comparison with torchvision's deeplabv3_resnet50 / fcn_resnet50")
    child.add_child_args(parser)
    args = parser.parse_args(argv)
    if child.answer_if_child(args, measure):
        return

    device = pick_device(args.device).type  # "cuda" or "cpu": the children take it as JSON
    gpu = device == "cuda"
    crop = args.crop or (512 if gpu else 128)
    batch = args.batch or (8 if gpu else 2)
    steps = args.steps or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    flag_sets = args.flags or (list(FLAG_SETS) if gpu else ["fp32", "amp", "channels_last", "amp+channels_last"])
    names = args.models or (models.list_models() if gpu else ["u_net", "psp_net"])
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; crop {crop}x{crop}, batch {batch}, {warmup} warm-up + "
          f"{steps} timed steps; model options {args.model_kwargs or '-'}; peak {args.peak_tflops or '-'} TFLOP/s\n")
    common = {"device": device, "crop": crop, "batch": batch, "steps": steps, "warmup": warmup,
              "classes": args.classes}

    rows = []
    for name in names:
        spec = {**common, "source": "ours", "name": name, "kwargs": args.model_kwargs}
        rows += table_rows(name, models.default_backbone(name) or "-", spec, flag_sets, args, forward_gflops(spec))
    print_rows(rows)

    if args.torchvision:
        print("\ntorchvision against ours, same run and flags (ratio: our images/s over torchvision's)\n")
        print("| network | flags | torchvision images/s | ours | ours images/s | ratio | "
              "torchvision peak MiB | ours peak MiB |")
        print("|---|---|---:|---|---:|---:|---:|---:|")
        for label, tv_name, tv_kwargs, our_name, our_kwargs in TORCHVISION_PAIRS:
            theirs_spec = {**common, "source": "torchvision", "name": tv_name, "kwargs": tv_kwargs}
            ours_spec = {**common, "source": "ours", "name": our_name, "kwargs": our_kwargs}
            ours_label = f"{our_name} " + " ".join(f"{k}={v}" for k, v in our_kwargs.items())
            for flags in flag_sets:
                theirs = run_child({**theirs_spec, "flags": flags}, args.timeout)
                ours = run_child({**ours_spec, "flags": flags}, args.timeout)
                if "error" in theirs or "error" in ours:
                    print(f"| {label} | {flags} | {theirs.get('error', '')} | {ours_label} | {ours.get('error', '')} "
                          f"| | | |", flush=True)
                    continue
                print(f"| {label} | {flags} | {theirs['images_per_s']:.2f} | {ours_label} | "
                      f"{ours['images_per_s']:.2f} | {ours['images_per_s'] / theirs['images_per_s']:.2f} | "
                      f"{theirs['peak_mib']:.0f} | {ours['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
