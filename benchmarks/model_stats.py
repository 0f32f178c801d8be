"""Parameter count and GFLOPs of every registered model, as a markdown table.

    python benchmarks/model_stats.py                  # each model on its default backbone
    python benchmarks/model_stats.py --all-backbones  # every (model, backbone) pair that builds

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` for one
forward pass of a 1 x 3 x 512 x 512 input in eval mode (no auxiliary head),
with its convention: one multiply-add is 2 FLOPs, and only convolutions and
matrix products are counted (BatchNorm, activations, pooling and
interpolation are left out; they are a few percent at most). The model runs
on the meta device (shapes only, no arithmetic), so the whole table takes
seconds; a model whose operators have no meta kernel runs on the CPU instead.
Parameters are counted for `--classes` output classes (21, PASCAL VOC).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from models.backbones import list_backbones  # noqa: E402


def measure(name: str, backbone: str | None, num_classes: int, size: int) -> tuple[int, float, str]:
    """(parameters, GFLOPs, device used) of one model."""
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = models.build_model(name, num_classes, backbone=backbone, pretrained=False).eval()
                x = torch.randn(1, 3, size, size)
            params = sum(p.numel() for p in model.parameters())
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                model(x)
            return params, counter.get_total_flops() / 1e9, device
        except (NotImplementedError, RuntimeError):
            if device == "cpu":
                raise
    raise AssertionError("unreachable")


def pairs(all_backbones: bool) -> list[tuple[str, str | None]]:
    result = []
    for name in models.list_models():
        default = models.default_backbone(name)
        result.append((name, default))
        if all_backbones and default is not None:
            for backbone in list_backbones():
                if backbone == default:
                    continue
                try:
                    with torch.device("meta"):
                        models.build_model(name, 2, backbone=backbone)
                except ValueError:  # a backbone this model does not take
                    continue
                result.append((name, backbone))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all-backbones", action="store_true", help="every backbone each model accepts")
    parser.add_argument("--classes", type=int, default=21, help="output classes (default: 21, PASCAL VOC)")
    parser.add_argument("--size", type=int, default=512, help="square input side (default: 512)")
    args = parser.parse_args(argv)

    print(f"| model | backbone | params (M) | GFLOPs @ {args.size}x{args.size} |")
    print("|---|---|---:|---:|")
    for name, backbone in pairs(args.all_backbones):
        params, gflops, _ = measure(name, backbone, args.classes, args.size)
        print(f"| {name} | {backbone or '-'} | {params / 1e6:.1f} | {gflops:.1f} |", flush=True)


if __name__ == "__main__":
    main()
