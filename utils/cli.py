"""Command-line overrides for a config dataclass: every field becomes a flag.

`batch_size` becomes `--batch-size`; booleans get `--flag` / `--no-flag`;
sequences take several values; dicts take JSON; `int | tuple[int, int]` takes
one value (an int) or two (a tuple), as `--crop-size 512` or `--crop-size 360 480`. A field's metadata may give
`help` and `choices`. The instance passed in supplies the defaults, so a
training script's own values are what `--help` shows.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Sequence


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
