"""Our models beside what users would install instead: segmentation-models-pytorch (smp) and torchvision.

    pip install -r benchmarks/requirements.txt       # smp: a benchmark-only dependency
    python benchmarks/peers.py                       # CPU: 128 x 128, batch 2; GPU: 512 x 512, batch 8
    python benchmarks/peers.py --crop 256 --batch 4 --pairs deeplab_v3

For each pair of networks, in one run: training images/s and inference
images/s (eval mode, no_grad), from the median step time, with ours and
theirs taking turns step by step in one loop, so that whatever else the machine does slows both alike; and
the peak memory of two training steps, each network in a fresh child process
(CUDA: max_memory_allocated; CPU: growth of the process's peak resident set
over its size before the model was built, with the libraries' code already
loaded). Ratios are ours over theirs: above
1, ours is faster or (memory) bigger. Every network starts from
random weights (nothing is downloaded) with ResNet-50 encoders wherever the
pair allows, so the encoder is the same network on both sides; the heads'
differences are listed in benchmarks/README.md. Our auxiliary heads are off
(`aux=False`) because no peer has one in these configurations.

A training step is the engine's own `Trainer.train_step` (utils/engine.py) for
both sides, through benchmarks/child.py's `engine_trainer`: forward, the
engine's SegmentationLoss (cross-entropy on 'out'), backward through the
NonFiniteGuard, the SGD step (lr 1e-4, momentum 0.9, weight decay 1e-4; fused
on CUDA) and the poly LR step. Our networks are built by the engine from the
registry; a peer's is handed to it (smp's, which return a bare tensor, wrapped
to return {'out': logits}).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import child  # noqa: E402 - benchmarks/, the script's own folder
from child import peak_rss_mib, rss_mib  # noqa: E402

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
    """A peer's network (ours are built by the engine from the registry)."""
    if spec["library"] == "smp":
        import segmentation_models_pytorch as smp
        return getattr(smp, spec["name"])(encoder_weights=None, classes=spec["classes"], **spec["kwargs"])
    import torchvision
    return torchvision.models.get_model(spec["name"], weights=None, weights_backbone=None,
                                        num_classes=spec["classes"], **spec["kwargs"])


class Stepper:
    """One network in the engine's Trainer, with a fixed batch: `train_step()` (the engine's) and
    `infer_step()` in seconds; `close()` when done."""

    def __init__(self, spec: dict) -> None:
        import torch

        self.device = torch.device(spec["device"])
        self._run_dir = tempfile.TemporaryDirectory()
        torch.manual_seed(0)
        network = ({"model_name": spec["name"], "model_kwargs": spec["kwargs"]} if spec["library"] == "ours"
                   else {"model": build(spec)})
        self.trainer = child.engine_trainer(**network, classes=spec["classes"], crop=spec["crop"],
                                            batch=spec["batch"], device=spec["device"], run_dir=self._run_dir.name)
        self.images = torch.randn(spec["batch"], 3, spec["crop"], spec["crop"], device=self.device)
        self.targets = torch.randint(0, spec["classes"], (spec["batch"], spec["crop"], spec["crop"]),
                                     device=self.device)

    def _timed(self, work) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def train_step(self) -> float:
        def work():
            self.trainer.train_model.train()
            self.trainer.train_step((self.images, self.targets))
        return self._timed(work)

    def infer_step(self) -> float:
        import torch

        def work():
            self.trainer.model.eval()
            with torch.no_grad():
                self.trainer.model(self.images)
        return self._timed(work)

    def close(self) -> None:
        self.trainer.logger.close()
        self._run_dir.cleanup()


def peak_memory(spec: dict) -> dict:
    """In a child process: the peak memory of training steps (the model, its gradients and optimiser
    state, and the activations of one step)."""
    import torch
    # Loaded before the baseline, so that code is not counted as the network's memory: the engine
    # (with our models and torchvision), its TensorBoard writer, and smp.
    import torch.utils.tensorboard  # noqa: F401
    import utils.engine  # noqa: F401
    if spec["library"] == "smp":
        import segmentation_models_pytorch  # noqa: F401

    baseline_mib = rss_mib()
    if spec["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stepper = Stepper(spec)
    try:
        for _ in range(2):  # the second step holds the optimiser's momentum too
            stepper.train_step()
    finally:
        stepper.close()
    if spec["device"] == "cuda":
        return {"peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20}
    return {"peak_mib": peak_rss_mib() - baseline_mib}


def speeds(specs: list[dict], steps: int, warmup: int) -> list[dict]:
    """Images/s of each network, its steps interleaved with the others' in this one process, so that
    whatever else the machine does slows all alike; the median step time of each."""
    steppers = []
    try:
        for spec in specs:
            steppers.append(Stepper(spec))
        results = []
        for kind in ("train_step", "infer_step"):
            times: list[list[float]] = [[] for _ in steppers]
            for index in range(warmup + steps):
                for stepper, own in zip(steppers, times):
                    elapsed = getattr(stepper, kind)()
                    if index >= warmup:
                        own.append(elapsed)
            results.append([specs[0]["batch"] / statistics.median(own) for own in times])
    finally:
        for stepper in steppers:
            stepper.close()
    return [{"train": train, "infer": infer} for train, infer in zip(*results)]


def run_child(spec: dict, timeout: float) -> dict:
    return child.run_child(__file__, spec, timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pairs", nargs="+", choices=list(PAIRS), default=list(PAIRS))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--crop", type=int, default=None, help="square input side (default: 512 GPU, 128 CPU)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default: 8 GPU, 2 CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps of each network (default: 20 GPU, 9 CPU)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each timing")
    parser.add_argument("--classes", type=int, default=21)
    child.add_child_args(parser)
    args = parser.parse_args(argv)
    if child.answer_if_child(args, peak_memory):
        return

    import torch

    from utils.runtime import pick_device

    device = pick_device(args.device).type
    gpu = device == "cuda"
    common = {"device": device, "crop": args.crop or (512 if gpu else 128), "batch": args.batch or (8 if gpu else 2),
              "steps": args.steps or (20 if gpu else 9), "warmup": args.warmup, "classes": args.classes}
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; input {common['crop']}x{common['crop']}, batch "
          f"{common['batch']}, {args.warmup} warm-up + {common['steps']} timed steps, {args.classes} classes, fp32\n")
    print("| ours | peer | train img/s ours | theirs | ratio | infer img/s ours | theirs | ratio | "
          "peak MiB ours | theirs | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for pair in args.pairs:
        (our_name, our_kwargs), peers = PAIRS[pair]
        for label, library, name, kwargs in peers:
            our_spec = {**common, "library": "ours", "name": our_name, "kwargs": our_kwargs}
            their_spec = {**common, "library": library, "name": name, "kwargs": kwargs}
            ours, theirs = run_child(our_spec, args.timeout), run_child(their_spec, args.timeout)
            if "error" in ours or "error" in theirs:
                print(f"| {pair} | {label} | failed: {ours.get('error') or theirs.get('error')} |"
                      + " |" * 8, flush=True)
                continue
            speed_ours, speed_theirs = speeds([our_spec, their_spec], common["steps"], args.warmup)
            ours, theirs = {**ours, **speed_ours}, {**theirs, **speed_theirs}
            print(f"  {pair} vs {label}: ours {ours}, theirs {theirs}", file=sys.stderr, flush=True)
            cells = []
            for key, pattern in (("train", ".2f"), ("infer", ".2f"), ("peak_mib", ".0f")):
                cells += [format(ours[key], pattern), format(theirs[key], pattern), f"{ours[key] / theirs[key]:.2f}"]
            print(f"| {pair} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
