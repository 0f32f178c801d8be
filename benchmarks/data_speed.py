"""Data loading speed: training-transform images/s per worker, and the share of step time spent waiting for data.

    python benchmarks/data_speed.py                                    # GPU: psp_net resnet101, crop 512, batch 8
    python benchmarks/data_speed.py --device cpu                       # CPU: small u_net, crop 128, batch 2
    python benchmarks/data_speed.py --dataset camvid --data-root ../shared/data/camvid --workers 8

Part 1 runs the training transforms of utils/engine.py (random scale, crop of
`--transform-crop` (512) padded with the ignore index, flip, normalise) in one
process, which is what one DataLoader worker does: images/s per worker.

Part 2 builds the engine's Trainer (benchmarks/child.py's `engine_trainer`) on
the chosen data set and trains with its own loader (`trainer.train_loader`:
the engine's training transforms, seeded samples, ResumableBatchSampler, pinned
memory on CUDA, persistent workers) at the engine's default worker count and
its own step (`trainer.train_step`: copy, forward, the engine's loss, backward,
SGD at lr 1e-4, the LR schedule), and splits each step into the time spent
blocked in the loader's `next()` and the rest. CUDA is synchronised after
each step so that the wait is time in which the device has nothing to do.
Waiting share = wait / (wait + rest), over the timed steps after a warm-up
that lets every worker deliver its first batch.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import child  # noqa: E402 - benchmarks/, the script's own folder
import datasets  # noqa: E402
import models  # noqa: E402
from utils.engine import TrainConfig  # noqa: E402
from utils.runtime import pick_device  # noqa: E402
from utils.transforms import train_transforms  # noqa: E402


def transform_speed(dataset, count: int) -> float:
    from utils.data import SeededSamples

    samples = SeededSamples(dataset)
    samples[(0, 0)]
    start = time.perf_counter()
    for i in range(count):
        samples[(i % len(dataset), i)]
    return count / (time.perf_counter() - start)


def timed_steps(trainer, warmup: int, steps: int) -> tuple[float, float]:
    """Seconds blocked in the engine's loader and seconds in the engine's step, summed over `steps`
    after `warmup` (which lets every worker deliver its first batch)."""
    gpu = trainer.device.type == "cuda"
    batches = trainer.batches
    wait = compute = 0.0
    iterator = iter(trainer.train_loader)
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:  # a new epoch, as the engine's loop starts one
            batches.set_position(batches.epoch + 1, 0)
            iterator = iter(trainer.train_loader)
            batch = next(iterator)
        t1 = time.perf_counter()
        trainer.train_step(batch)
        if gpu:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if step >= warmup:
            wait, compute = wait + t1 - t0, compute + t2 - t1
    return wait, compute


def main(argv: list[str] | None = None) -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--dataset", default="shapes", choices=datasets.list_datasets())
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--dataset-kwargs", type=json.loads, default=None,
                        help="JSON (default for shapes: '{\"size\": 1024}', images of a Cityscapes-like scale)")
    parser.add_argument("--transform-crop", type=int, default=512, help="crop for part 1")
    parser.add_argument("--transform-images", type=int, default=None, help="images for part 1 (default: 40 GPU, 12 CPU)")
    parser.add_argument("--model", default=None, choices=models.list_models(),
                        help="model for part 2 (default: psp_net on GPU, u_net on CPU)")
    parser.add_argument("--model-kwargs", type=json.loads, default=None,
                        help="JSON (default: '{\"backbone\": \"resnet101\"}' for psp_net on GPU, "
                             "'{\"width\": 8}' for u_net on CPU)")
    parser.add_argument("--crop", type=int, default=None, help="training crop for part 2 (default: 512 GPU, 128 CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch for part 2 (default: 8 GPU, 2 CPU)")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="DataLoader workers for part 2 (the engine's default)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps for part 2 (default: 30 GPU, 10 CPU)")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    kwargs = args.dataset_kwargs if args.dataset_kwargs is not None else (
        {"size": 1024} if args.dataset == "shapes" else {})
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; data set {args.dataset} {kwargs or ''}\n")

    # Part 1: one worker's throughput.
    crop = args.transform_crop
    dataset = datasets.build_dataset(args.dataset, "train", args.data_root,
                                     train_transforms(crop, (defaults.scale_min, defaults.scale_max)), **kwargs)
    count = args.transform_images or (40 if gpu else 12)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    speed = transform_speed(dataset, count)
    torch.set_num_threads(threads)
    print(f"| training transforms (crop {crop}, scale {defaults.scale_min}-{defaults.scale_max}, flip) | images/s per worker |")
    print("|---|---:|")
    print(f"| {args.dataset} | {speed:.1f} |\n", flush=True)

    # Part 2: share of step time waiting for data.
    name = args.model or ("psp_net" if gpu else "u_net")
    model_kwargs = args.model_kwargs if args.model_kwargs is not None else (
        ({"backbone": "resnet101"} if name == "psp_net" else {}) if gpu else ({"width": 8} if name == "u_net" else {}))
    crop, batch = args.crop or (512 if gpu else 128), args.batch or (8 if gpu else 2)
    steps = args.steps or (30 if gpu else 10)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = child.engine_trainer(model_name=name, model_kwargs=model_kwargs, crop=crop, batch=batch,
                                       device=device.type, amp=args.amp, channels_last=args.channels_last,
                                       run_dir=run_dir, dataset=args.dataset, data_root=args.data_root,
                                       dataset_kwargs=kwargs, workers=args.workers)
        try:
            wait, compute = timed_steps(trainer, warmup=max(2, args.workers), steps=steps)
        finally:
            trainer.logger.close()
    total = wait + compute
    print("| model | crop | batch | workers | step ms | waiting for data ms | waiting share |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {name} {model_kwargs or ''} | {crop} | {batch} | {args.workers} | {1000 * total / steps:.0f} | "
          f"{1000 * wait / steps:.1f} | {100 * wait / total:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
