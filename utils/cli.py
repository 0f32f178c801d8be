"""The command line of every script.

Training: `parse_config` turns every field of a config dataclass into a flag.
`batch_size` becomes `--batch-size`; booleans get `--flag` / `--no-flag`;
sequences take several values; dicts take JSON; `int | tuple[int, int]` takes
one value (an int) or two (a tuple), as `--crop-size 512` or `--crop-size 360 480`. A field's metadata may give
`help` and `choices`. The instance passed in supplies the defaults, so a
training script's own values are what `--help` shows.

eval.py and predict.py: `add_inference_args` and the helpers below them load the
model a checkpoint describes, with the input normalisation and precision
settings it was trained and validated with.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Sequence

import torch
from torch import nn

from models.input_norm import InputNorm

from .checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from .inference import PROTOCOLS, InferenceConfig, semseg_stride
from .runtime import autocast_dtype


def _parse_json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"width\": 16}}': {err}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"width\": 16}'")
    return value


def _optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _is_int_or_pair(kind) -> bool:
    """`int | tuple[int, int]`: a size given as one number (square) or as (height, width)."""
    args = typing.get_args(kind)
    return (typing.get_origin(kind) in (typing.Union, getattr(__import__("types"), "UnionType", None))
            and int in args and tuple[int, int] in args)


def build_parser(config, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(config, field.name)
        kind = hints[field.name]
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        options = {"default": default, "help": field.metadata.get("help", " "), "dest": field.name}
        if "choices" in field.metadata:
            options["choices"] = field.metadata["choices"]
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
            continue
        if _is_int_or_pair(kind):
            parser.add_argument(flag, nargs="+", type=int, metavar="N", **options)
            continue
        optional = origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args
        if optional:
            kind = next(a for a in args if a is not type(None))
            origin, args = typing.get_origin(kind), typing.get_args(kind)
        if kind is dict or origin is dict:
            options["type"] = _parse_json
        elif origin in (tuple, list, Sequence) or kind in (tuple, list):
            options["nargs"] = "+"
            options["type"] = args[0] if args else str
        else:
            options["type"] = _optional(kind) if optional else kind
        parser.add_argument(flag, **options)
    return parser


def parse_config(config, argv: Sequence[str] | None = None, description: str | None = None):
    """A copy of `config` with the command line's overrides applied; `config.validate()` is called
    and its ValueError becomes a usage error, so bad flags fail before any work starts."""
    parser = build_parser(config, description)
    namespace = parser.parse_args(argv)
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    for name, value in values.items():
        if _is_int_or_pair(hints[name]) and isinstance(value, list):
            if len(value) > 2:
                parser.error(f"--{name.replace('_', '-')} takes one size or two (height width), got {value}")
            values[name] = value[0] if len(value) == 1 else tuple(value)
        elif isinstance(getattr(config, name), tuple) and isinstance(value, list):
            values[name] = tuple(value)
    result = dataclasses.replace(config, **values)
    if hasattr(result, "validate"):
        try:
            result.validate()
        except ValueError as err:
            parser.error(str(err))
    return result


# ---------------------------------------------------------------- eval.py and predict.py

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
    parser.add_argument("--protocol", choices=PROTOCOLS, default=None,
                        help="semseg: the test of PSPNet's authors (hszhao/semseg): longer side resized to "
                             "--long-side, padded around the centre with the mean to --tile, crops of --tile at "
                             "stride ceil(2/3 tile) unless --stride, each crop and its mirror image, softmax "
                             "probabilities averaged, resized back bilinearly; --mode and --flip do not apply "
                             "(default: the checkpoint's val_protocol, else 'default')")
    parser.add_argument("--long-side", type=int, default=None,
                        help="--protocol semseg: resize the longer side to this (their base_size: 512 for VOC "
                             "and ADE20K, 2048 for Cityscapes; 0: the image's own size; default: the "
                             "checkpoint's val_long_side)")
    parser.add_argument("--tile-batch", type=int, default=4,
                        help="sliding-window tiles per forward pass (bounds memory in --mode slide)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (bf16, or fp16 on GPUs without bf16; default: the checkpoint's "
                             "--amp, so that the run's own validation figures are reproduced)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels_last memory format (default: the checkpoint's)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a progress bar in a terminal; --no-progress (or no terminal) prints a line "
                             "every 30 s instead")


def check_inference_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors, before any work, for values argparse's types cannot catch."""
    for name in ("tile", "stride", "tile_batch", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("base_size", "mirror_margin", "long_side"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if any(s <= 0 for s in args.scales):
        parser.error(f"--scales must be positive, got {args.scales}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but no CUDA device is available")


def inference_config(args: argparse.Namespace, train_config: dict, program: str) -> InferenceConfig:
    """The checkpoint's validation settings, overridden by the flags."""
    margin = train_config["val_mirror_margin"] if args.mirror_margin is None else args.mirror_margin
    protocol = args.protocol or train_config["val_protocol"]
    long_side = train_config["val_long_side"] if args.long_side is None else args.long_side
    tile = args.tile or train_config["val_tile"]
    # The authors' stride follows the crop, whatever stride the checkpoint's own validation used.
    default_stride = semseg_stride(tile) if protocol == "semseg" else train_config["val_stride"]
    inference = InferenceConfig(mode=args.mode or train_config["val_mode"], tile=tile,
                                stride=args.stride or default_stride, batch_size=args.tile_batch,
                                scales=tuple(args.scales), flip=args.flip, mirror_margin=margin,
                                protocol=protocol, long_side=long_side)
    try:
        inference.validate()
    except ValueError as err:
        raise SystemExit(f"{program}: {err}") from None
    return inference


def precision(args: argparse.Namespace, train_config: dict, device: torch.device,
              model: nn.Module) -> tuple[bool, torch.dtype | None]:
    """(channels_last, autocast dtype or None): the checkpoint's run settings, overridden by the
    flags. With channels_last, `model` is converted in place, as the engine converts it.
    The dtype follows the engine's own rule (`runtime.autocast_dtype`), so that eval.py
    reproduces the run's validation."""
    amp = train_config["amp"] if args.amp is None else args.amp
    channels_last = train_config["channels_last"] if args.channels_last is None else args.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return channels_last, autocast_dtype(device) if amp else None


def input_norm(state: dict) -> InputNorm:
    """The pixel normalisation the checkpoint's model was trained with."""
    return InputNorm.from_dict(state["input_norm"])


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


def describe_training(state: dict) -> str:
    """One line saying how a checkpoint was trained: model and options, data, schedule,
    optimiser, crops, precision, and the code it came from when recorded."""
    cfg = state.get("config", {})
    origin = state.get("provenance") or {}
    kwargs = f" {state.get('model_kwargs')}" if state.get("model_kwargs") else ""
    crop = cfg.get("crop_size")
    parts = [f"trained: {state.get('model')}{kwargs} on {state.get('dataset')} {cfg.get('train_split', '?')}",
             f"iteration {state.get('iteration')}/{cfg.get('iters', '?')}",
             f"batch {cfg.get('batch_size')} x {state.get('world_size', 1)}",
             f"{cfg.get('optimizer')} lr {cfg.get('lr')} wd {cfg.get('weight_decay')} poly {cfg.get('poly_power')}",
             f"crop {crop if isinstance(crop, int) else 'x'.join(map(str, crop or ()))} "
             f"scale {cfg.get('scale_min')}-{cfg.get('scale_max')}",
             f"loss {cfg.get('loss', 'ce')}{' ' + str(cfg['loss_kwargs']) if cfg.get('loss_kwargs') else ''}",
             f"class weights {cfg.get('class_weights', 'none')}"]
    parts += ["amp"] * bool(cfg.get("amp")) + ["channels_last"] * bool(cfg.get("channels_last"))
    if origin.get("git_commit"):
        parts.append(f"git {origin['git_commit'][:10]}{' (dirty)' if origin.get('git_dirty') else ''}, "
                     f"torch {origin.get('torch')}")
    return ", ".join(parts)
