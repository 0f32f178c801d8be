"""Feature extractors built from torchvision's definitions.

A backbone returns a list of feature maps ordered from fine to coarse, and
describes them in `channels` and `strides`, so that a head is written once and
sits on any backbone (the idea of timm's `features_only`). Nominal strides are
4, 8, 16, 32; dilation replaces the last strides where a head asks for a finer
output stride (PSPNet, DeepLab, DUC-HDC).

Pretrained weights are torchvision's ImageNet files, looked up by file name in
`config.weights_dir()` (torchvision's own cache by default, or $SEG_WEIGHTS) and
downloaded when missing (models/pretrained.py). They are loaded strictly into torchvision's full model before the classifier
is dropped, so a file that does not match is an error, never a silent partial
load. `vgg16_caffe` is the FCN paper's VGG16: Caffe's weights converted to a
torchvision-style state dict (`vgg16-00b39a1b.pth`, jcjohnson/pytorch-vgg).

Every backbone carries `input_norm` (models/input_norm.py): the pixel
normalisation its weights expect, ImageNet's for torchvision's files and
Caffe's (BGR, 0..255, mean subtracted, no std) for `vgg16_caffe`.
"""
from __future__ import annotations

import contextlib
import os
from typing import Sequence

import torch
import torchvision
from torch import nn

from .input_norm import CAFFE_VGG, IMAGENET, InputNorm
from .layers import PaddedConv2d
from .pretrained import (CAFFE_VGG_WEIGHTS, DEEP_RESNET_WEIGHTS, SEMSEG_DRIVE_URL,  # noqa: F401 (re-exported)
                         load_pretrained, weight_path, weight_url)


class Backbone(nn.Module):
    """Holds a network's modules under their own names and returns the output of each stage.

    `modules` are registered in order under their names (torchvision's: `conv1`, `bn1`,
    `layer1`..`layer4` for a ResNet, `features` for VGG and DenseNet), so that state-dict
    keys are those of the network the weights come from (`backbone.layer1.0.conv1.weight`).
    `stage_names[i]` lists the dotted paths of the submodules that stage i runs, in order
    (`["conv1", "bn1", "relu", "maxpool", "layer1"]`, `["features.0", ..., "features.9"]`);
    they are looked up at every call, so a module replaced in place (SyncBatchNorm's
    conversion) is the one that runs.
    """

    def __init__(self, modules: dict[str, nn.Module], stage_names: Sequence[Sequence[str]],
                 channels: list[int], strides: list[int], input_norm: InputNorm = IMAGENET) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self.stage_names = [list(names) for names in stage_names]
        for names in self.stage_names:
            for name in names:
                self.get_submodule(name)  # an unknown path is an error now, not at the first forward
        if not len(self.stage_names) == len(channels) == len(strides):
            raise ValueError(f"{len(self.stage_names)} stages, {len(channels)} channels, {len(strides)} strides")
        self.channels = list(channels)
        self.strides = list(strides)
        self.input_norm = input_norm

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for names in self.stage_names:
            for name in names:
                x = self.get_submodule(name)(x)
            features.append(x)
        return features

    @property
    def stages(self) -> list[nn.Module]:
        """The stages in order, each as it runs: its one module (ResNet's `layer2`), or an
        nn.Sequential of its modules. A view for heads that take a backbone apart (SegNet);
        the modules are registered under their own names, not here."""
        return [self.get_submodule(names[0]) if len(names) == 1
                else nn.Sequential(*(self.get_submodule(name) for name in names))
                for names in self.stage_names]


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
        net = torchvision.models.get_model(CAFFE_VGG_WEIGHTS.get(arch, (arch,))[0], weights=None)
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

VGG_ARCHS = ("vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "vgg16_caffe")


def vgg(arch: str = "vgg16", pretrained: bool = False, *, with_fc: bool = False,
        fc_channels: int = 4096, weights_file: str | os.PathLike | None = None) -> Backbone:
    """VGG split at its pooling layers into stages of stride 4, 8, 16 and 32.

    The backbone keeps torchvision's `features` (keys `features.N.*`, N as in
    torchvision); each stage runs its layers up to and including a pooling (the
    first stage two poolings).

    With `with_fc`, a fifth stage adds fc6 (7x7 conv) and fc7 (1x1 conv), the
    classifier turned convolutional as in the FCN paper, initialised from the
    pretrained classifier when `fc_channels` is 4096. fc6 is padded by 3 so that
    it keeps the stride-32 map's size (the paper padded the input by 100 and
    cropped instead; padding here keeps every size aligned). fc6 and fc7 are
    followed by element-wise dropout (nn.Dropout, Caffe's), not channel dropout.
    They are named as in Caffe's VGG16 (`fc6`, `relu6`, `drop6`, `fc7`, `relu7`,
    `drop7`), not torchvision's `classifier.0/3`: they are convolutions, with
    shapes that torchvision's Linear layers do not have.
    """
    if arch not in VGG_ARCHS:
        raise ValueError(f"unknown VGG {arch!r}; choose one of {', '.join(VGG_ARCHS)}")
    net = _torchvision_vgg(arch, pretrained, weights_file)
    pools = [i for i, layer in enumerate(net.features) if isinstance(layer, nn.MaxPool2d)]
    bounds = [0, pools[1] + 1, pools[2] + 1, pools[3] + 1, pools[4] + 1]
    modules: dict[str, nn.Module] = {"features": net.features}
    stages = [[f"features.{i}" for i in range(a, b)] for a, b in zip(bounds, bounds[1:])]
    channels, strides = [128, 256, 512, 512], [4, 8, 16, 32]
    if with_fc:
        if pretrained and fc_channels != 4096:
            raise ValueError("pretrained fc6/fc7 need fc_channels=4096")
        # With pretrained weights the 120M values are copied anyway: skip their random init.
        with torch.device("meta") if pretrained else contextlib.nullcontext():
            fc6 = PaddedConv2d(512, fc_channels, 7, padding=3)  # pads the input itself: see PaddedConv2d
            fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        if pretrained:
            fc6.to_empty(device="cpu")
            fc7.to_empty(device="cpu")
            with torch.no_grad():
                fc6.weight.copy_(net.classifier[0].weight.reshape(4096, 512, 7, 7))
                fc6.bias.copy_(net.classifier[0].bias)
                fc7.weight.copy_(net.classifier[3].weight.reshape(4096, 4096, 1, 1))
                fc7.bias.copy_(net.classifier[3].bias)
        modules.update(fc6=fc6, relu6=nn.ReLU(inplace=True), drop6=nn.Dropout(0.5),
                       fc7=fc7, relu7=nn.ReLU(inplace=True), drop7=nn.Dropout(0.5))
        stages.append(["fc6", "relu6", "drop6", "fc7", "relu7", "drop7"])
        channels.append(fc_channels)
        strides.append(32)
    return Backbone(modules, stages, channels, strides, CAFFE_VGG if arch in CAFFE_VGG_WEIGHTS else IMAGENET)


# ---------------------------------------------------------------- ResNet

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


DEEP_RESNET_ARCHS = tuple(DEEP_RESNET_WEIGHTS)


def resnet(arch: str = "resnet50", pretrained: bool = False, *, output_stride: int = 32,
           block_dilations: dict[str, Sequence[int]] | None = None, dilate_first_block: bool = False,
           weights_file: str | os.PathLike | None = None) -> Backbone:
    """ResNet with stages of stride 4, 8, 16, 32, dilated for output stride 16 or 8.

    Dilation follows torchvision's `replace_stride_with_dilation` exactly (and
    DeepLab): the first block of a dilated stage keeps the previous dilation,
    later blocks use the new one. `dilate_first_block=True` gives every block
    of a dilated stage the stage's rate, first block included (hszhao/semseg's
    PSPNet: 2 in every block of layer3, 4 in every block of layer4).

    The backbone keeps torchvision's module names (`conv1`, `bn1`, `relu`,
    `maxpool`, `layer1`..`layer4`; avgpool and fc are dropped): stage 0 runs the
    stem and layer1, stages 1..3 are layer2..4.

    `resnet50_deep` / `resnet101_deep` are the authors' ResNets of
    hszhao/semseg (PSPNet): a "deep base" stem of three 3x3 convolutions
    (64, 64, 128 channels, the first with stride 2), each with BatchNorm and
    ReLU, then max pooling and layer1 taking 128 channels; the blocks are
    torchvision's. Their ImageNet weights are the authors' files
    `resnet50_v2.pth` / `resnet101_v2.pth` (see DEEP_RESNET_WEIGHTS). Its
    modules are named as in the authors' PSPNet: the stem is `layer0` (conv1,
    bn1, relu, conv2, bn2, relu, conv3, bn3, relu, maxpool at indices 0..9),
    then `layer1`..`layer4`, so that their checkpoints' backbone keys are ours.

    `block_dilations` overrides that per block, for hybrid dilated convolution
    (DUC-HDC): {'layer3': (1, 2, 5, 9), 'layer4': (5, 9, 17)} gives the blocks
    of each named stage these absolute rates, repeated cyclically over the
    stage. Only stages that the output stride dilates can be given rates, so
    the feature strides stay those of `output_stride`.
    """
    if arch not in RESNET_ARCHS + DEEP_RESNET_ARCHS:
        raise ValueError(f"unknown ResNet {arch!r}; choose one of {', '.join(RESNET_ARCHS + DEEP_RESNET_ARCHS)}")
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    deep = arch in DEEP_RESNET_ARCHS
    net = _deep_base_resnet(arch, pretrained, weights_file) if deep else _torchvision_model(arch, pretrained,
                                                                                              weights_file)
    dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
    _dilate_resnet(net, dilate, dilate_first_block)
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
    layers = {name: getattr(net, name) for name in ("layer1", "layer2", "layer3", "layer4")}
    if deep:  # the authors' PSPNet's `layer0`, indices included
        stem = {"layer0": nn.Sequential(net.conv1, net.bn1, nn.ReLU(inplace=True), net.conv2, net.bn2,
                                        nn.ReLU(inplace=True), net.conv3, net.bn3, nn.ReLU(inplace=True),
                                        net.maxpool)}
        stem_names = [f"layer0.{i}" for i in range(10)]
    else:
        stem = {"conv1": net.conv1, "bn1": net.bn1, "relu": net.relu, "maxpool": net.maxpool}
        stem_names = list(stem)
    stages = [[*stem_names, "layer1"], ["layer2"], ["layer3"], ["layer4"]]
    expansion = 1 if arch in ("resnet18", "resnet34") else 4
    channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion]
    strides, stride = [4], 4
    for d in dilate:
        stride = stride if d else stride * 2
        strides.append(stride)
    return Backbone({**stem, **layers}, stages, channels, strides)


def _set_block_dilation(block: nn.Module, dilation: int) -> None:
    # The 3x3 convolutions carry the dilation (one in a Bottleneck, two in a
    # BasicBlock); padding = dilation keeps the map's size.
    for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
        if conv.kernel_size == (3, 3):
            conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)


def _dilate_resnet(net: nn.Module, dilate: list[bool], dilate_first_block: bool = False) -> None:
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
            _set_block_dilation(block, previous if index == 0 and not dilate_first_block else dilation)


def _deep_base_resnet(arch: str, pretrained: bool, weights_file: str | os.PathLike | None) -> nn.Module:
    """torchvision's ResNet with the authors' deep-base stem, its modules named as in their ResNet
    (conv1..3, bn1..3, layer1..4, fc), so that their ImageNet file loads by name.

    Only its modules are used (`resnet` re-assembles the stem as their PSPNet's `layer0`);
    torchvision's forward, which knows nothing of conv2 / conv3, is not. New convolutions get the init that torchvision and the
    authors both use (Kaiming normal, fan-out); BatchNorm starts at 1 / 0.
    """
    net = torchvision.models.get_model(DEEP_RESNET_WEIGHTS[arch][0], weights=None)

    def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
        layer = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        return layer

    net.conv1, net.bn1 = conv(3, 64, 3, stride=2), nn.BatchNorm2d(64)
    net.conv2, net.bn2 = conv(64, 64, 3), nn.BatchNorm2d(64)
    net.conv3, net.bn3 = conv(64, 128, 3), nn.BatchNorm2d(128)
    first = net.layer1[0]  # takes the stem's 128 channels instead of 64
    first.conv1 = conv(128, first.conv1.out_channels, 1)
    first.downsample[0] = conv(128, first.downsample[0].out_channels, 1)
    if pretrained:
        load_pretrained(net, arch, weights_file)
    return net


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

    The backbone keeps torchvision's `features` (keys `features.conv0.*`,
    `features.denseblock1.*`, `features.transition1.*`, ..., `features.norm5.*`);
    the final ReLU, a function call in torchvision's forward, is the module
    `features.relu5` here (named as the stem's `relu0`).
    """
    if arch not in DENSENET_ARCHS:
        raise ValueError(f"unknown DenseNet {arch!r}; choose one of {', '.join(DENSENET_ARCHS)}")
    f = _torchvision_model(arch, pretrained, weights_file).features
    f.add_module("relu5", nn.ReLU(inplace=True))
    stages = [
        ["conv0", "norm0", "relu0", "pool0", "denseblock1", "transition1.norm", "transition1.relu"],
        ["transition1.conv", "transition1.pool", "denseblock2", "transition2.norm", "transition2.relu"],
        ["transition2.conv", "transition2.pool", "denseblock3", "transition3.norm", "transition3.relu"],
        ["transition3.conv", "transition3.pool", "denseblock4", "norm5", "relu5"],
    ]
    channels = [f.transition1.norm.num_features, f.transition2.norm.num_features,
                f.transition3.norm.num_features, f.norm5.num_features]
    return Backbone({"features": f}, [[f"features.{name}" for name in names] for names in stages], channels,
                    [4, 8, 16, 32])


# ---------------------------------------------------------------- registry

def build_backbone(name: str, pretrained: bool = False, **kwargs) -> Backbone:
    """Build a backbone by torchvision architecture name ('vgg16', 'resnet50', 'densenet121', ...).

    Keyword options go to `vgg`, `resnet` or `densenet`; every family takes
    `weights_file` (a torchvision state-dict file overriding the default path).
    """
    if name in VGG_ARCHS:
        return vgg(name, pretrained, **kwargs)
    if name in RESNET_ARCHS + DEEP_RESNET_ARCHS:
        return resnet(name, pretrained, **kwargs)
    if name in DENSENET_ARCHS:
        return densenet(name, pretrained, **kwargs)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")


def list_backbones() -> list[str]:
    return [*VGG_ARCHS, *RESNET_ARCHS, *DEEP_RESNET_ARCHS, *DENSENET_ARCHS]
