"""Sliding-window evaluation speed: our batched `sliding_window` against a one-tile-at-a-time loop.

    python benchmarks/eval_speed.py                                    # GPU: psp_net, 1024x2048, tile 769, stride 513
    python benchmarks/eval_speed.py --device cpu                       # CPU: small u_net, 256x512, tile 193, stride 129
    python benchmarks/eval_speed.py --model deeplab_v3 --tile-batch 4 8 --amp --channels-last

Both paths run the same model in eval mode under torch.inference_mode on the
same random images, one image per call as eval.py does with its default batch
of 1, and must agree (the largest logit difference is printed). The batched
path is `utils.inference.sliding_window`, which stacks `--tile-batch` tiles per forward
pass; the baseline forwards one (contiguous) tile at a time and accumulates.
`--tile-batch 1` shows what is left once batching is taken away. images/s
counts full-size images after one untimed warm-up image; CUDA is synchronised
before the clock stops.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import models  # noqa: E402
from utils.runtime import autocast_dtype, pick_device  # noqa: E402
from utils.inference import sliding_window, tile_starts  # noqa: E402


def one_tile_loop(predict, image: torch.Tensor, num_classes: int, tile: int, stride: int) -> torch.Tensor:
    """The plain loop: every tile through the model on its own."""
    _, _, height, width = image.shape
    logits = torch.zeros(1, num_classes, height, width, device=image.device)
    counts = torch.zeros(1, 1, height, width, device=image.device)
    for y in tile_starts(height, tile, stride):
        for x in tile_starts(width, tile, stride):
            # contiguous, as sliding_window's stacked tiles are: the ratio then measures batching alone
            crop = image[..., y:y + tile, x:x + tile].contiguous()
            logits[..., y:y + tile, x:x + tile] += predict(crop).float()
            counts[..., y:y + tile, x:x + tile] += 1
    return logits / counts


def timed(fn, images: list[torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    fn(images[0])  # warm-up (cudnn autotuning, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for image in images:
        out = fn(image)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start), out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--model", default=None, choices=models.list_models(),
                        help="default: psp_net on GPU, u_net on CPU")
    parser.add_argument("--model-kwargs", type=json.loads, default=None,
                        help="JSON options (default on CPU: '{\"width\": 8}')")
    parser.add_argument("--height", type=int, default=None, help="image height (default: 1024 GPU, 256 CPU)")
    parser.add_argument("--width", type=int, default=None, help="image width (default: 2048 GPU, 512 CPU)")
    parser.add_argument("--tile", type=int, default=None, help="tile side (default: 769 GPU, 193 CPU)")
    parser.add_argument("--stride", type=int, default=None, help="tile stride (default: 513 GPU, 129 CPU)")
    parser.add_argument("--tile-batch", type=int, nargs="+", default=[1, 4, 8], help="tiles per forward pass")
    parser.add_argument("--images", type=int, default=None, help="timed images (default: 10 GPU, 2 CPU)")
    parser.add_argument("--classes", type=int, default=19, help="output classes (19: Cityscapes)")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 where supported, else fp16)")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    name = args.model or ("psp_net" if gpu else "u_net")
    kwargs = args.model_kwargs if args.model_kwargs is not None else ({} if gpu or args.model else {"width": 8})
    height, width = args.height or (1024 if gpu else 256), args.width or (2048 if gpu else 512)
    tile, stride = args.tile or (769 if gpu else 193), args.stride or (513 if gpu else 129)
    count = args.images or (10 if gpu else 2)
    if gpu:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(0)
    model = models.build_model(name, args.classes, pretrained=False, **kwargs).to(device).eval()
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    dtype = autocast_dtype(device) if args.amp else None

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return model(tiles.contiguous(memory_format=memory_format))["out"]

    images = [torch.randn(1, 3, height, width, device=device) for _ in range(count)]
    tiles = len(tile_starts(height, tile, stride)) * len(tile_starts(width, tile, stride))
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; torch {torch.__version__}; {name} {kwargs or ''} ({models.default_backbone(name) or '-'}"
          f"), {args.classes} classes; images {height}x{width}, tile {tile}, stride {stride} ({tiles} tiles/image); "
          f"amp {args.amp}, channels_last {args.channels_last}; {count} timed images\n")
    with torch.inference_mode():
        loop_speed, reference = timed(lambda im: one_tile_loop(predict, im, args.classes, tile, stride),
                                      images, device)
        print("| method | tiles per forward | images/s | vs one-tile loop | max abs logit diff |")
        print("|---|---:|---:|---:|---:|")
        print(f"| one-tile loop | 1 | {loop_speed:.3f} | 1.00 | - |", flush=True)
        for batch in args.tile_batch:
            speed, out = timed(lambda im: sliding_window(predict, im, args.classes, tile, stride, batch),
                               images, device)
            diff = (out - reference).abs().max().item()
            print(f"| sliding_window | {batch} | {speed:.3f} | {speed / loop_speed:.2f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
