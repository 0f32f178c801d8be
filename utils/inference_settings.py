"""The one vocabulary of inference settings: how a model is run on images to score or segment them.

`InferenceConfig` names each setting once (whole image or sliding window, test-time
scales and flips, mirrored borders, the PSPNet authors' protocol, base size, batch
sizes, precision), with its default, help text and valid values. Every script speaks it:

- a training config carries each setting as `val_<name>` (`--val-tile`, `--val-mode`, ...),
  declared with `validation_field(name)`; the precision settings `amp` and
  `channels_last` are the training run's own fields, which validation shares;
- eval.py, predict.py and the tools take each setting as `--<name>` (`--tile`, `--mode`,
  ...): `utils.cli.add_inference_args` generates the flags from these fields with the
  parser machinery that makes the training flags; a flag left out means "the checkpoint's";
- `InferenceConfig.from_train_config(cfg, **overrides)` gives the settings a run was
  validated with (from a `TrainConfig`, or the config dict a checkpoint holds), with a
  script's overrides applied.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

PROTOCOLS = ("default", "semseg")
MODES = ("whole", "slide")


def semseg_stride(tile: int) -> int:
    """The crop stride of PSPNet's authors' test: ceil(2/3 of the crop)."""
    return math.ceil(tile * 2 / 3)


def _setting(default: Any, help: str, choices: tuple | None = None, minimum: int | None = None,
             shared: bool = False):
    """A setting: `minimum` is the smallest valid value; `shared` marks a setting that a training
    config holds under its own name (the run's precision) instead of as `val_<name>`."""
    metadata: dict = {"help": help}
    if choices is not None:
        metadata["choices"] = list(choices)
    if minimum is not None:
        metadata["minimum"] = minimum
    if shared:
        metadata["shared"] = True
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class InferenceConfig:
    mode: str = _setting("whole", "whole-image or sliding-window inference", MODES)
    tile: int = _setting(512, "sliding-window tile size (protocol semseg: the crop size)", minimum=1)
    stride: int = _setting(341, "sliding-window stride (protocol semseg: ceil(2/3 tile) unless given)", minimum=1)
    tile_batch: int = _setting(4, "sliding-window tiles (or semseg crops) per forward pass: bounds the memory "
                                  "of sliding-window inference", minimum=1)
    batch_size: int = _setting(1, "images per batch (1 for data sets whose images differ in size)", minimum=1)
    base_size: int = _setting(0, "resize the images' shorter side to this for the model; results stay at the "
                                 "original resolution (0: off)", minimum=0)
    scales: tuple[float, ...] = _setting((1.0,), "test-time scales: logits averaged over them")
    flip: bool = _setting(False, "also average the horizontally flipped prediction")
    mirror_margin: int = _setting(0, "reflect-pad each image by this many pixels before inference and crop the "
                                     "result back (the U-Net paper's overlap-tile with mirrored borders)", minimum=0)
    protocol: str = _setting("default", "semseg: the test of PSPNet's authors (hszhao/semseg): the longer side "
                                        "resized to long-side, padded around the centre with the mean to the "
                                        "tile, crops of the tile at stride ceil(2/3 tile), each crop and its "
                                        "mirror image, softmax probabilities averaged, resized back bilinearly; "
                                        "mode and flip do not apply", PROTOCOLS)
    long_side: int = _setting(0, "protocol semseg: resize the longer side to this first (their base_size: 512 "
                                 "for VOC and ADE20K, 2048 for Cityscapes; 0: the image's own size)", minimum=0)
    threshold: float = _setting(0.5, "two-class data sets: predict class 1 where its probability exceeds this "
                                     "(0.5: the argmax; the ROC AUC and average precision do not depend on it)")
    amp: bool = _setting(False, "mixed precision (bf16, or fp16 on GPUs without bf16)", shared=True)
    channels_last: bool = _setting(False, "channels_last memory format", shared=True)

    @classmethod
    def from_train_config(cls, cfg: Mapping | Any, **overrides: Any) -> InferenceConfig:
        """The settings a run validates with, from its training config (a `TrainConfig`, or the
        "config" dict of a checkpoint: utils.checkpoint.migrate fills in what older layouts lack),
        with `overrides` applied (None: not given). The semseg protocol's stride follows the
        tile unless a stride is given, whatever stride the run's other validation used."""
        fields = {f.name: f.name if f.metadata.get("shared") else f"val_{f.name}" for f in dataclasses.fields(cls)}
        config = cfg if isinstance(cfg, Mapping) else vars(cfg)
        missing = [key for key in fields.values() if key not in config]
        if missing:
            raise ValueError(f"the training config lacks the inference settings {', '.join(missing)}")
        values = {name: config[key] for name, key in fields.items()}
        given = {name: value for name, value in overrides.items() if value is not None}
        unknown = sorted(set(given) - set(values))
        if unknown:
            raise TypeError(f"unknown inference settings {unknown}; known: {', '.join(values)}")
        values.update(given)
        if values["protocol"] == "semseg" and "stride" not in given:
            values["stride"] = semseg_stride(values["tile"])
        values["scales"] = tuple(values["scales"])
        return cls(**values)

    @classmethod
    def check_values(cls, values: Mapping[str, Any], flag_prefix: str | None = None) -> None:
        """ValueError for any value in `values` (settings by name) outside its valid range,
        named as `flag_prefix` + the flag (e.g. "--val-" gives --val-tile), or by field
        name when no prefix is given."""
        for f in dataclasses.fields(cls):
            if f.name not in values:
                continue
            value, name = values[f.name], _name(f.name, flag_prefix)
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                raise ValueError(f"{name} {value!r} is not one of: {', '.join(f.metadata['choices'])}")
            if "minimum" in f.metadata and value < f.metadata["minimum"]:
                raise ValueError(f"{name} must be >= {f.metadata['minimum']}, got {value}")
        threshold = values.get("threshold")
        if threshold is not None and not 0 < threshold < 1:
            raise ValueError(f"{_name('threshold', flag_prefix)} must lie strictly between 0 and 1 (a probability of "
                             f"class 1), got {threshold}")
        scales = values.get("scales")
        if scales is not None and (not scales or any(not s > 0 for s in scales)):
            raise ValueError(f"{_name('scales', flag_prefix)} must be positive numbers, got {list(scales)}")

    def check_classes(self, num_classes: int, flag_prefix: str | None = None) -> None:
        """ValueError when a threshold other than the argmax's is set for a model of more than two
        classes, before any image is run."""
        if self.threshold != 0.5 and num_classes != 2:
            raise ValueError(f"{_name('threshold', flag_prefix)} {self.threshold} applies to two-class data sets; "
                             f"this one has {num_classes} classes (leave it at 0.5, the argmax)")

    def validate(self, flag_prefix: str | None = None) -> None:
        """ValueError for a bad value or a combination that cannot run (see `check_values`
        for the naming)."""
        self.check_values(dataclasses.asdict(self), flag_prefix)

        def name(field: str) -> str:
            return _name(field, flag_prefix)

        if (self.mode == "slide" or self.protocol == "semseg") and self.stride > self.tile:
            raise ValueError(f"{name('stride')} {self.stride} exceeds {name('tile')} {self.tile}: the windows "
                             f"would leave gaps")
        if self.protocol == "semseg" and self.mirror_margin:
            raise ValueError(f"{name('protocol')} semseg pads crops with the mean colour; it takes no "
                             f"{name('mirror_margin')} (got {self.mirror_margin})")
        if self.protocol == "semseg" and self.base_size:
            raise ValueError(f"{name('base_size')} {self.base_size} resizes the shorter side, but {name('protocol')} "
                             f"semseg resizes the longer side to {name('long_side')}: they cannot be combined; "
                             f"give {name('base_size')} 0 and the size as {name('long_side')}")


def _name(field: str, flag_prefix: str | None) -> str:
    return field if flag_prefix is None else flag_prefix + field.replace("_", "-")


def validation_field(name: str):
    """The field of a training config that holds setting `name` for validation (as `val_<name>`):
    the setting's own default, help and valid values, so that they are written once."""
    setting = next(f for f in dataclasses.fields(InferenceConfig) if f.name == name)
    if setting.metadata.get("shared"):
        raise ValueError(f"{name} is the training run's own setting, not a validation field")
    return dataclasses.field(default=setting.default, metadata=dict(setting.metadata))
