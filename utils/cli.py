"""The command line of every script, made from config dataclasses.

Training: `parse_config` turns every field of a config dataclass into a flag.
`batch_size` becomes `--batch-size`; booleans get `--flag` / `--no-flag`;
sequences take several values; dicts take JSON; `int | tuple[int, int]` takes
one value (an int) or two (a tuple), as `--crop-size 512` or `--crop-size 360 480`;
`bool | Literal["auto"]` is a boolean flag that also takes one of the words, as
`--resume` / `--resume auto` / `--no-resume`. A field's metadata may give
`help` and `choices`. The instance passed in supplies the defaults, so a
training script's own values are what `--help` shows.

eval.py, predict.py and the tools: `add_inference_args` makes the same kind of flag
from every field of `InferenceConfig` (utils/inference_settings.py), the settings a
training config holds as `val_<name>`; a flag not given means "the checkpoint's".
Loading the checkpoint is `utils.predictor.Predictor.from_checkpoint`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Sequence

import torch

from .inference_settings import InferenceConfig


def parse_json_object(text: str) -> dict:
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


def _is_union(kind) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


def _is_int_or_pair(kind) -> bool:
    """`int | tuple[int, int]`: a size given as one number (square) or as (height, width)."""
    return _is_union(kind) and int in typing.get_args(kind) and tuple[int, int] in typing.get_args(kind)


def _add_field_flag(parser: argparse.ArgumentParser, field: dataclasses.Field, kind, default,
                    help_suffix: str = "") -> None:
    """The flag of one config field: `--name-with-dashes`, parsed by the field's type."""
    flag = "--" + field.name.replace("_", "-")
    options = {"default": default, "help": field.metadata.get("help", " ") + help_suffix, "dest": field.name}
    if "choices" in field.metadata:
        options["choices"] = field.metadata["choices"]
    if kind is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        return
    words = _bool_or_words(kind)
    if words:  # --flag (True), --flag WORD, --no-flag (False)
        parser.add_argument(flag, nargs="?", const=True, choices=words, metavar="|".join(words), **options)
        parser.add_argument("--no-" + flag[2:], action="store_false", dest=field.name, default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)
        return
    if _is_int_or_pair(kind):
        parser.add_argument(flag, nargs="+", type=int, metavar="N", **options)
        return
    args = typing.get_args(kind)
    optional = _is_union(kind) and type(None) in args
    if optional:
        kind = next(a for a in args if a is not type(None))
        args = typing.get_args(kind)
    origin = typing.get_origin(kind)
    if kind is dict or origin is dict:
        options["type"] = parse_json_object
    elif origin in (tuple, list, Sequence) or kind in (tuple, list):
        options["nargs"] = "+"
        options["type"] = args[0] if args else str
    else:
        options["type"] = _optional(kind) if optional else kind
    parser.add_argument(flag, **options)


def _bool_or_words(kind) -> tuple[str, ...]:
    """The words of `bool | Literal[...]` (e.g. ("auto",) for --resume), else ()."""
    args = typing.get_args(kind)
    if not _is_union(kind) or bool not in args:
        return ()
    literals = [a for a in args if typing.get_origin(a) is typing.Literal]
    return tuple(word for literal in literals for word in typing.get_args(literal))


def build_parser(config, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        _add_field_flag(parser, field, hints[field.name], getattr(config, field.name))
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


# ---------------------------------------------------------------- eval.py, predict.py and the tools

def add_inference_args(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """A flag for every inference setting but those in `exclude` (`--tile`, `--scales`, `--flip` /
    `--no-flip`, ...; utils/inference_settings.py), each defaulting to the checkpoint's, plus
    `--device` and `--progress`."""
    hints = typing.get_type_hints(InferenceConfig)
    for field in dataclasses.fields(InferenceConfig):
        if field.name not in exclude:
            _add_field_flag(parser, field, hints[field.name], None, " (default: the checkpoint's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where to run (auto: CUDA when there is one)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a progress bar in a terminal; --no-progress (or no terminal) prints a line "
                             "every 30 s instead")


def inference_overrides(args: argparse.Namespace) -> dict:
    """The inference settings given on the command line, by name (see `add_inference_args`)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(InferenceConfig)
             if getattr(args, f.name, None) is not None}
    if "scales" in given:
        given["scales"] = tuple(given["scales"])
    return given


def check_inference_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors, before any work, for values argparse's types cannot catch."""
    try:
        InferenceConfig.check_values(inference_overrides(args), flag_prefix="--")
    except ValueError as err:
        parser.error(str(err))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda was asked for, but no CUDA device is available")
