"""Model registry: every architecture is built by name.

Adding an architecture is one module in this folder plus one line in MODELS.
A builder takes `num_classes`, keyword-only `backbone` and `pretrained`, and
its own options, and returns a module mapping float[N, 3, H, W] to
{'out': logits[N, C, H, W]} (plus 'aux' in training where the paper has an
auxiliary loss) at the input's resolution.
"""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from . import deeplab, duc, fcn, gcn, psp_net, refine_net, seg_net, u_net

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn32s": fcn.fcn32s,
    "fcn16s": fcn.fcn16s,
    "fcn8s": fcn.fcn8s,
    "u_net": u_net.build_u_net,
    "seg_net": seg_net.seg_net,
    "psp_net": psp_net.psp_net,
    "gcn": gcn.gcn,
    "duc": duc.duc,
    "duc_hdc": duc.duc_hdc,
    "deeplab_v3": deeplab.deeplab_v3,
    "deeplab_v3_plus": deeplab.deeplab_v3_plus,
    "refine_net": refine_net.refine_net,
}


def list_models() -> list[str]:
    return sorted(MODELS)


def default_backbone(name: str) -> str | None:
    """The backbone a model uses when none is given (None for models without one)."""
    _check_name(name)
    return inspect.signature(MODELS[name]).parameters["backbone"].default


def build_model(name: str, num_classes: int, *, backbone: str | None = None,
                pretrained: bool = False, **kwargs) -> nn.Module:
    _check_name(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if backbone is not None:
        kwargs["backbone"] = backbone
    return MODELS[name](num_classes, pretrained=pretrained, **kwargs)


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
