"""Our models beside what users would install instead: segmentation-models-pytorch (smp) and torchvision.

    pip install -r benchmarks/requirements.txt       # smp: a benchmark-only dependency
    python benchmarks/peers.py                       # CPU: 128 x 128, batch 2; GPU: 512 x 512, batch 8
    python benchmarks/peers.py --crop 256 --batch 4 --pairs deeplab_v3

For each pair of networks, in one loop and one run (each measurement in a fresh
child process, ours and theirs alternating, so that a busy machine slows both
alike): training images/s (forward, cross-entropy on 'out', backward, SGD step),
inference images/s (eval mode, no_grad), and peak memory of the training
measurement (CUDA: max_memory_allocated; CPU: growth of the process's peak
resident set over its size before the model was built). Ratios are ours over
theirs: above 1, ours is faster or (memory) bigger. Every network starts from
random weights (nothing is downloaded) with ResNet-50 encoders wherever the
pair allows, so the encoder is the same network on both sides; the heads'
differences are listed in benchmarks/README.md. Our auxiliary heads are off
(`aux=False`) because no peer has one in these configurations.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import child  # noqa: E402 - benchmarks/, the script's own folder
from child import rss_mib  # noqa: E402

# name: (our model and options, [(peer label, library, constructor, its options), ...])
PAIRS = {
    "u_net": (("u_net", {"width": 64, "depth": 4}),
              [("smp.Unet resnet34, depth 4", "smp", "Unet",
                {"encoder_name": "resnet34", "encoder_depth": 4, "decoder_channels": [512, 256, 128, 64]})]),
    "psp_net": (("psp_net", {"backbone": "resnet50", "output_stride": 8, "aux": False}),
                [("smp.PSPNet resnet50, depth 5", "smp", "PSPNet",
                  {"encoder_name": "resnet50", "encoder_depth": 5, "upsampling": 32})]),
    "deeplab_v3": (("deeplab_v3", {"backbone": "resnet50", "output_stride": 8}),
                   [("smp.DeepLabV3 resnet50, OS 8", "smp", "DeepLabV3",
                     {"encoder_name": "resnet50", "encoder_output_stride": 8}),
                    ("torchvision deeplabv3_resnet50", "torchvision", "deeplabv3_resnet50", {"aux_loss": False})]),
    "deeplab_v3_plus": (("deeplab_v3_plus", {"backbone": "resnet50", "output_stride": 16}),
                        [("smp.DeepLabV3Plus resnet50, OS 16", "smp", "DeepLabV3Plus",
                          {"encoder_name": "resnet50", "encoder_output_stride": 16,
                           "decoder_atrous_rates": [6, 12, 18], "decoder_aspp_separable": False})]),
}


def build(spec: dict):
    """The network a child process measures, returning logits through `logits(model(x))`."""
    if spec["library"] == "ours":
        import models
        return models.build_model(spec["name"], spec["classes"], pretrained=False, **spec["kwargs"])
    if spec["library"] == "smp":
        import segmentation_models_pytorch as smp
        return getattr(smp, spec["name"])(encoder_weights=None, classes=spec["classes"], **spec["kwargs"])
    import torchvision
    return torchvision.models.get_model(spec["name"], weights=None, weights_backbone=None,
                                        num_classes=spec["classes"], **spec["kwargs"])


def logits(output):
    return output["out"] if isinstance(output, dict) else output


def measure(spec: dict) -> dict:
    """In a child process: training and inference images/s and the training's peak memory."""
    import torch
    import torch.nn.functional as F

    device = torch.device(spec["device"])
    torch.manual_seed(0)
    baseline_mib = rss_mib()
    model = build(spec).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(spec["batch"], 3, spec["crop"], spec["crop"], device=device)
    targets = torch.randint(0, spec["classes"], (spec["batch"], spec["crop"], spec["crop"]), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        loss = F.cross_entropy(logits(model(images)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(step) -> float:
        for _ in range(spec["warmup"]):
            step()
        sync()
        start = time.perf_counter()
        for _ in range(spec["steps"]):
            step()
        sync()
        return spec["batch"] * spec["steps"] / (time.perf_counter() - start)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train = timed(train_step)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline_mib
    model.eval()
    with torch.no_grad():
        infer = timed(lambda: model(images))
    return {"train": train, "infer": infer, "peak_mib": peak}


def run_child(spec: dict, timeout: float) -> dict:
    return child.run_child(__file__, spec, timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--crop", type=int, default=None, help="square input side (default: 512 GPU, 128 CPU)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 8 GPU, 2 CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each timing")
    parser.add_argument("--classes", type=int, default=21)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return

    import torch

    from utils.engine import pick_device

    device = pick_device(args.device).type
    gpu = device == "cuda"
    common = {"device": device, "crop": args.crop or (512 if gpu else 128), "batch": args.batch or (8 if gpu else 2),
              "steps": args.steps or (20 if gpu else 3), "warmup": args.warmup, "classes": args.classes}
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; input {common['crop']}x{common['crop']}, batch "
          f"{common['batch']}, {args.warmup} warm-up + {common['steps']} timed steps, {args.classes} classes, fp32\n")
    print("| ours | peer | train img/s ours | theirs | ratio | infer img/s ours | theirs | ratio | "
          "peak MiB ours | theirs | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for pair in args.pairs:
        (our_name, our_kwargs), peers = PAIRS[pair]
        for label, library, name, kwargs in peers:
            ours = run_child({**common, "library": "ours", "name": our_name, "kwargs": our_kwargs}, args.timeout)
            theirs = run_child({**common, "library": library, "name": name, "kwargs": kwargs}, args.timeout)
            print(f"  {pair} vs {label}: ours {ours}, theirs {theirs}", file=sys.stderr, flush=True)
            if "error" in ours or "error" in theirs:
                print(f"| {pair} | {label} | failed: {ours.get('error') or theirs.get('error')} |"
                      + " |" * 8, flush=True)
                continue
            cells = []
            for key, pattern in (("train", ".2f"), ("infer", ".2f"), ("peak_mib", ".0f")):
                cells += [format(ours[key], pattern), format(theirs[key], pattern), f"{ours[key] / theirs[key]:.2f}"]
            print(f"| {pair} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
