"""Command-line pieces shared by eval.py and predict.py: inference flags,
their checks, and loading the model a checkpoint describes."""
from __future__ import annotations

import argparse

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .inference import InferenceConfig


def add_inference_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("whole", "slide"), default=None,
                        help="whole-image or sliding-window inference (default: the checkpoint's)")
    parser.add_argument("--tile", type=int, default=None, help="sliding-window tile size")
    parser.add_argument("--stride", type=int, default=None, help="sliding-window stride")
    parser.add_argument("--base-size", type=int, default=None,
                        help="resize the images' shorter side to this for the model (0: off; default: the "
                             "checkpoint's val_base_size); results stay at the original resolution")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0], help="test-time scales")
    parser.add_argument("--flip", action="store_true", help="also average horizontally flipped predictions")
    parser.add_argument("--mirror-margin", type=int, default=None,
                        help="reflect-pad each image by this many pixels before inference, crop the result back "
                             "(the U-Net paper's overlap-tile; default: the checkpoint's val_mirror_margin)")
    parser.add_argument("--tile-batch", type=int, default=4,
                        help="sliding-window tiles per forward pass (bounds memory in --mode slide)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def check_inference_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors, before any work, for values argparse's types cannot catch."""
    for name in ("tile", "stride", "tile_batch", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("base_size", "mirror_margin"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if any(s <= 0 for s in args.scales):
        parser.error(f"--scales must be positive, got {args.scales}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but no CUDA device is available")


def inference_config(args: argparse.Namespace, train_config: dict, program: str) -> InferenceConfig:
    """The checkpoint's validation settings, overridden by the flags."""
    margin = train_config.get("val_mirror_margin", 0) if args.mirror_margin is None else args.mirror_margin
    inference = InferenceConfig(mode=args.mode or train_config["val_mode"],
                                tile=args.tile or train_config["val_tile"],
                                stride=args.stride or train_config["val_stride"], batch_size=args.tile_batch,
                                scales=tuple(args.scales), flip=args.flip, mirror_margin=margin)
    try:
        inference.validate()
    except ValueError as err:
        raise SystemExit(f"{program}: {err}") from None
    return inference


def base_size(args: argparse.Namespace, train_config: dict) -> int:
    return train_config["val_base_size"] if args.base_size is None else args.base_size


def load_for_inference(path: str, device: torch.device) -> tuple[dict, nn.Module]:
    """(checkpoint, its model in eval mode on `device`); a bad checkpoint is a clean exit naming why."""
    try:
        state = load_checkpoint(path)
        model = model_from_checkpoint(state)
    except CheckpointError as err:
        raise SystemExit(str(err)) from None
    return state, model.to(device).eval()
