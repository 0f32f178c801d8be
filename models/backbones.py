"""Feature extractors built from torchvision's definitions.

A backbone returns a list of feature maps ordered from fine to coarse, and
describes them in `channels` and `strides`, so that a head is written once and
sits on any backbone (the idea of timm's `features_only`). Nominal strides are
4, 8, 16, 32; dilation replaces the last strides where a head asks for a finer
output stride (PSPNet, DeepLab, DUC-HDC).

Pretrained weights are torchvision's ImageNet files, looked up by file name in
`config.weights_dir()` (torchvision's own cache by default, or $SEG_WEIGHTS).
They are loaded strictly into torchvision's full model before the classifier
is dropped, so a file that does not match is an error, never a silent partial
load.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

import config


class Backbone(nn.Module):
    """Runs `stages` in sequence and returns the output of each one."""

    def __init__(self, stages: list[nn.Module], channels: list[int], strides: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = list(channels)
        self.strides = list(strides)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


# ---------------------------------------------------------------- weights

def weight_url(arch: str) -> str:
    """Official download URL of torchvision's ImageNet weights for `arch` (V1, as the papers used)."""
    return torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].url


def weight_path(arch: str) -> Path:
    return config.weights_dir() / os.path.basename(urlparse(weight_url(arch)).path)


def load_pretrained(model: nn.Module, arch: str, path: str | os.PathLike | None = None) -> None:
    """Load torchvision's ImageNet weights for `arch` strictly into `model`.

    `path` defaults to the file torchvision would download, inside the weights
    folder of config.py. A missing file is an error naming the path and the URL.
    """
    path = Path(path) if path is not None else weight_path(arch)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {arch} not found at {path}. Download "
            f"{weight_url(arch)} into {path.parent} (or set SEG_WEIGHTS to the "
            f"folder that holds it), or train from scratch with pretrained=False "
            f"(--no-pretrained)."
        )
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = _fix_legacy_keys(arch, state_dict)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{path} is not a torchvision {arch} state dict: {err}") from None


def _fix_legacy_keys(arch: str, state_dict: dict) -> dict:
    """torchvision's DenseNet files still use the old 'norm.1' key names."""
    if not arch.startswith("densenet"):
        return state_dict
    import re
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    fixed = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def _torchvision_model(arch: str, pretrained: bool, weights_file: str | None = None) -> nn.Module:
    model = torchvision.models.get_model(arch, weights=None)
    if pretrained:
        load_pretrained(model, arch, weights_file)
    return model


# ---------------------------------------------------------------- VGG

VGG_ARCHS = ("vgg16", "vgg16_bn", "vgg19", "vgg19_bn")


def vgg(arch: str = "vgg16", pretrained: bool = False, *, with_fc: bool = False,
        fc_channels: int = 4096, weights_file: str | None = None) -> Backbone:
    """VGG split at its pooling layers into stages of stride 4, 8, 16 and 32.

    With `with_fc`, a fifth stage adds fc6 (7x7 conv) and fc7 (1x1 conv), the
    classifier turned convolutional as in the FCN paper, initialised from the
    pretrained classifier when `fc_channels` is 4096. fc6 is padded by 3 so that
    it keeps the stride-32 map's size (the paper padded the input by 100 and
    cropped instead; padding here keeps every size aligned).
    """
    if arch not in VGG_ARCHS:
        raise ValueError(f"unknown VGG {arch!r}; choose one of {', '.join(VGG_ARCHS)}")
    net = _torchvision_model(arch, pretrained, weights_file)
    layers = list(net.features)
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    bounds = [0, pools[1] + 1, pools[2] + 1, pools[3] + 1, pools[4] + 1]
    stages: list[nn.Module] = [nn.Sequential(*layers[a:b]) for a, b in zip(bounds, bounds[1:])]
    channels, strides = [128, 256, 512, 512], [4, 8, 16, 32]
    if with_fc:
        fc6 = nn.Conv2d(512, fc_channels, 7, padding=3)
        fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        if pretrained:
            if fc_channels != 4096:
                raise ValueError("pretrained fc6/fc7 need fc_channels=4096")
            fc6.weight.data.copy_(net.classifier[0].weight.data.view(4096, 512, 7, 7))
            fc6.bias.data.copy_(net.classifier[0].bias.data)
            fc7.weight.data.copy_(net.classifier[3].weight.data.view(4096, 4096, 1, 1))
            fc7.bias.data.copy_(net.classifier[3].bias.data)
        stages.append(nn.Sequential(fc6, nn.ReLU(inplace=True), nn.Dropout2d(0.5),
                                    fc7, nn.ReLU(inplace=True), nn.Dropout2d(0.5)))
        channels.append(fc_channels)
        strides.append(32)
    return Backbone(stages, channels, strides)


# ---------------------------------------------------------------- ResNet

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def resnet(arch: str = "resnet50", pretrained: bool = False, *, output_stride: int = 32,
           weights_file: str | None = None) -> Backbone:
    """ResNet with stages of stride 4, 8, 16, 32, dilated for output stride 16 or 8.

    Dilation follows torchvision (and DeepLab): the first block of a dilated
    stage keeps the previous dilation, later blocks use the new one.
    """
    if arch not in RESNET_ARCHS:
        raise ValueError(f"unknown ResNet {arch!r}; choose one of {', '.join(RESNET_ARCHS)}")
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    net = _torchvision_model(arch, pretrained, weights_file)
    dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
    _dilate_resnet(net, dilate)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    stages = [stem, net.layer2, net.layer3, net.layer4]
    expansion = 4 if arch in ("resnet50", "resnet101", "resnet152") else 1
    channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
    strides, stride = [4], 4
    for d in dilate:
        stride = stride if d else stride * 2
        strides.append(stride)
    return Backbone(stages, channels, strides)


def _dilate_resnet(net: nn.Module, dilate: list[bool]) -> None:
    """Turn the stride-2 of layer2..4 into dilation, in place, for any block type."""
    dilation = 1
    for layer, use_dilation in zip((net.layer2, net.layer3, net.layer4), dilate):
        if not use_dilation:
            continue
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(layer):
            d = previous if index == 0 else dilation
            for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
                if conv.stride == (2, 2):
                    conv.stride = (1, 1)
                if conv.kernel_size == (3, 3):
                    conv.dilation, conv.padding = (d, d), (d, d)


# ---------------------------------------------------------------- registry

def build_backbone(name: str, pretrained: bool = False, **kwargs) -> Backbone:
    """Build a backbone by torchvision architecture name ('vgg16', 'resnet50', ...)."""
    if name in VGG_ARCHS:
        return vgg(name, pretrained, **kwargs)
    if name in RESNET_ARCHS:
        return resnet(name, pretrained, **kwargs)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")


def list_backbones() -> list[str]:
    return [*VGG_ARCHS, *RESNET_ARCHS]
