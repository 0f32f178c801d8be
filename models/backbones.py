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

import contextlib
import os
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

import config
from .layers import PaddedConv2d


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


def load_pretrained(model: nn.Module, arch: str, path: str | os.PathLike | None = None, *,
                    assign: bool = False) -> None:
    """Load torchvision's ImageNet weights for `arch` strictly into `model`.

    `path` defaults to the file torchvision would download, inside the weights
    folder of config.py. A missing file is an error naming the path and the URL.
    `assign` replaces the parameters instead of copying into them (for models
    built on the meta device).
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
        model.load_state_dict(state_dict, strict=True, assign=assign)
    except RuntimeError as err:
        raise RuntimeError(f"{path} is not a torchvision {arch} state dict: {err}") from None


def _fix_legacy_keys(arch: str, state_dict: dict) -> dict:
    """torchvision's DenseNet files still use the old 'norm.1' key names."""
    if not arch.startswith("densenet"):
        return state_dict
    import re
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    fixed = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed


def _torchvision_model(arch: str, pretrained: bool, weights_file: str | os.PathLike | None = None) -> nn.Module:
    model = torchvision.models.get_model(arch, weights=None)
    if pretrained:
        load_pretrained(model, arch, weights_file)
    return model


def _torchvision_vgg(arch: str, pretrained: bool, weights_file: str | os.PathLike | None) -> nn.Module:
    """torchvision's VGG without paying for its 120M-parameter classifier when it is dropped.

    The model is built on the meta device (no memory, no init). Pretrained
    weights are then assigned strictly, as for every other backbone; from
    scratch, only `features` is materialised and initialised with torchvision's
    own VGG rule (Kaiming normal, fan-out, for convolutions; BatchNorm 1 / 0),
    so that `vgg16` from scratch is the same distribution as torchvision's.
    """
    with torch.device("meta"):
        net = torchvision.models.get_model(arch, weights=None)
    if pretrained:
        load_pretrained(net, arch, weights_file, assign=True)
        return net
    # The caller's default device (CPU, or meta when only counting parameters).
    net.features.to_empty(device=torch.get_default_device())
    for module in net.features.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    return net


# ---------------------------------------------------------------- VGG

VGG_ARCHS = ("vgg16", "vgg16_bn", "vgg19", "vgg19_bn")


def vgg(arch: str = "vgg16", pretrained: bool = False, *, with_fc: bool = False,
        fc_channels: int = 4096, weights_file: str | os.PathLike | None = None) -> Backbone:
    """VGG split at its pooling layers into stages of stride 4, 8, 16 and 32.

    With `with_fc`, a fifth stage adds fc6 (7x7 conv) and fc7 (1x1 conv), the
    classifier turned convolutional as in the FCN paper, initialised from the
    pretrained classifier when `fc_channels` is 4096. fc6 is padded by 3 so that
    it keeps the stride-32 map's size (the paper padded the input by 100 and
    cropped instead; padding here keeps every size aligned).
    """
    if arch not in VGG_ARCHS:
        raise ValueError(f"unknown VGG {arch!r}; choose one of {', '.join(VGG_ARCHS)}")
    net = _torchvision_vgg(arch, pretrained, weights_file)
    layers = list(net.features)
    pools = [i for i, layer in enumerate(layers) if isinstance(layer, nn.MaxPool2d)]
    bounds = [0, pools[1] + 1, pools[2] + 1, pools[3] + 1, pools[4] + 1]
    stages: list[nn.Module] = [nn.Sequential(*layers[a:b]) for a, b in zip(bounds, bounds[1:])]
    channels, strides = [128, 256, 512, 512], [4, 8, 16, 32]
    if with_fc:
        if pretrained and fc_channels != 4096:
            raise ValueError("pretrained fc6/fc7 need fc_channels=4096")
        # With pretrained weights the 120M values are copied anyway: skip their random init.
        with torch.device("meta") if pretrained else contextlib.nullcontext():
            fc6 = PaddedConv2d(512, fc_channels, 7, padding=3)  # not padding=3: see PaddedConv2d
            fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        if pretrained:
            fc6.to_empty(device="cpu")
            fc7.to_empty(device="cpu")
            with torch.no_grad():
                fc6.weight.copy_(net.classifier[0].weight.reshape(4096, 512, 7, 7))
                fc6.bias.copy_(net.classifier[0].bias)
                fc7.weight.copy_(net.classifier[3].weight.reshape(4096, 4096, 1, 1))
                fc7.bias.copy_(net.classifier[3].bias)
        stages.append(nn.Sequential(fc6, nn.ReLU(inplace=True), nn.Dropout2d(0.5),
                                    fc7, nn.ReLU(inplace=True), nn.Dropout2d(0.5)))
        channels.append(fc_channels)
        strides.append(32)
    return Backbone(stages, channels, strides)


# ---------------------------------------------------------------- ResNet

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def resnet(arch: str = "resnet50", pretrained: bool = False, *, output_stride: int = 32,
           block_dilations: dict[str, Sequence[int]] | None = None,
           weights_file: str | os.PathLike | None = None) -> Backbone:
    """ResNet with stages of stride 4, 8, 16, 32, dilated for output stride 16 or 8.

    Dilation follows torchvision's `replace_stride_with_dilation` exactly (and
    DeepLab): the first block of a dilated stage keeps the previous dilation,
    later blocks use the new one.

    `block_dilations` overrides that per block, for hybrid dilated convolution
    (DUC-HDC): {'layer3': (1, 2, 5, 9), 'layer4': (5, 9, 17)} gives the blocks
    of each named stage these absolute rates, repeated cyclically over the
    stage. Only stages that the output stride dilates can be given rates, so
    the feature strides stay those of `output_stride`.
    """
    if arch not in RESNET_ARCHS:
        raise ValueError(f"unknown ResNet {arch!r}; choose one of {', '.join(RESNET_ARCHS)}")
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    net = _torchvision_model(arch, pretrained, weights_file)
    dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
    _dilate_resnet(net, dilate)
    if block_dilations:
        dilated = {name for name, d in zip(("layer2", "layer3", "layer4"), dilate) if d}
        for name, rates in block_dilations.items():
            if name not in dilated:
                raise ValueError(f"block_dilations[{name!r}]: only stages dilated at output_stride="
                                 f"{output_stride} take rates ({', '.join(sorted(dilated)) or 'none'})")
            if not rates or any(int(r) < 1 for r in rates):
                raise ValueError(f"block_dilations[{name!r}] must be positive rates, got {rates}")
            for index, block in enumerate(getattr(net, name)):
                _set_block_dilation(block, int(rates[index % len(rates)]))
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    stages = [stem, net.layer2, net.layer3, net.layer4]
    expansion = 4 if arch in ("resnet50", "resnet101", "resnet152") else 1
    channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
    strides, stride = [4], 4
    for d in dilate:
        stride = stride if d else stride * 2
        strides.append(stride)
    return Backbone(stages, channels, strides)


def _set_block_dilation(block: nn.Module, dilation: int) -> None:
    # The 3x3 convolutions carry the dilation (one in a Bottleneck, two in a
    # BasicBlock); padding = dilation keeps the map's size.
    for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
        if conv.kernel_size == (3, 3):
            conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def _dilate_resnet(net: nn.Module, dilate: list[bool]) -> None:
    """Turn the stride-2 of layer2..4 into dilation, in place, for any block type."""
    dilation = 1
    for layer, use_dilation in zip((net.layer2, net.layer3, net.layer4), dilate):
        if not use_dilation:
            continue
        previous, dilation = dilation, dilation * 2
        for index, block in enumerate(layer):
            for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
                if conv.stride == (2, 2):
                    conv.stride = (1, 1)
            _set_block_dilation(block, previous if index == 0 else dilation)


# ---------------------------------------------------------------- DenseNet

DENSENET_ARCHS = ("densenet121", "densenet161", "densenet169", "densenet201")


def densenet(arch: str = "densenet121", pretrained: bool = False, *,
             weights_file: str | os.PathLike | None = None) -> Backbone:
    """DenseNet cut after each dense block, at strides 4, 8, 16 and 32.

    A dense block's output is a concatenation of un-normalised feature maps;
    each stage therefore ends with the BatchNorm + ReLU that torchvision applies
    next (the transition's, or norm5 and the final ReLU for the last block), so
    every returned map is an activation and the transition's 1x1 convolution and
    pooling open the next stage. Channels: 256, 512, 1024, 1024 for DenseNet-121
    (read from the model, not assumed). No dilation: output stride 32 only.
    """
    if arch not in DENSENET_ARCHS:
        raise ValueError(f"unknown DenseNet {arch!r}; choose one of {', '.join(DENSENET_ARCHS)}")
    f = _torchvision_model(arch, pretrained, weights_file).features
    stages = [
        nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0, f.denseblock1,
                      f.transition1.norm, f.transition1.relu),
        nn.Sequential(f.transition1.conv, f.transition1.pool, f.denseblock2,
                      f.transition2.norm, f.transition2.relu),
        nn.Sequential(f.transition2.conv, f.transition2.pool, f.denseblock3,
                      f.transition3.norm, f.transition3.relu),
        nn.Sequential(f.transition3.conv, f.transition3.pool, f.denseblock4,
                      f.norm5, nn.ReLU(inplace=True)),
    ]
    channels = [f.transition1.norm.num_features, f.transition2.norm.num_features,
                f.transition3.norm.num_features, f.norm5.num_features]
    return Backbone(stages, channels, [4, 8, 16, 32])


# ---------------------------------------------------------------- registry

def build_backbone(name: str, pretrained: bool = False, **kwargs) -> Backbone:
    """Build a backbone by torchvision architecture name ('vgg16', 'resnet50', 'densenet121', ...).

    Keyword options go to `vgg`, `resnet` or `densenet`; every family takes
    `weights_file` (a torchvision state-dict file overriding the default path).
    """
    if name in VGG_ARCHS:
        return vgg(name, pretrained, **kwargs)
    if name in RESNET_ARCHS:
        return resnet(name, pretrained, **kwargs)
    if name in DENSENET_ARCHS:
        return densenet(name, pretrained, **kwargs)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")


def list_backbones() -> list[str]:
    return [*VGG_ARCHS, *RESNET_ARCHS, *DENSENET_ARCHS]
