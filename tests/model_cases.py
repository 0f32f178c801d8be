"""The (model, backbone, options) cases that tests/test_models.py runs.

Every registered model must appear at least once; options pick the smallest
sensible widths so that the whole table runs on a CPU in seconds. Cases marked
`aux=True` must return an 'aux' output in training mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    model: str
    backbone: str | None = None
    kwargs: dict = field(default_factory=dict)
    aux: bool = False

    @property
    def id(self) -> str:
        return f"{self.model}-{self.backbone or 'default'}"


CASES = [
    Case("u_net", None, {"width": 8}),
    Case("fcn32s", "vgg16", {"fc_channels": 32}),
    Case("fcn16s", "vgg16", {"fc_channels": 32}),
    Case("fcn8s", "vgg16", {"fc_channels": 32}),
    Case("fcn32s", "resnet18"),
    Case("fcn16s", "resnet18"),
    Case("fcn8s", "resnet18"),
    Case("fcn32s", "densenet121"),
    Case("fcn16s", "densenet121"),
    Case("fcn8s", "densenet121"),
    Case("seg_net", "vgg16_bn"),
    Case("psp_net", "resnet18", {"width": 16}, aux=True),
    Case("gcn", "resnet18"),
    Case("duc", "resnet18"),
    Case("duc_hdc", "resnet18"),
    Case("deeplab_v3", "resnet18", {"channels": 16}),
    Case("deeplab_v3", "resnet18", {"channels": 16, "output_stride": 8, "aux": True}, aux=True),
    Case("deeplab_v3_plus", "resnet18", {"channels": 16, "aux": True}, aux=True),
    Case("refine_net", "resnet18", {"features": 8}),
]
