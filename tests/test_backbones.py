import re

import pytest
import torch
import torchvision
from torch import nn

import models
from models import backbones, pretrained
from models.backbones import build_backbone, list_backbones, weight_path, weight_url
from models.layers import PaddedConv2d
from utils.checkpoint import migrate

# torchvision's documented ImageNet parameter counts (the `num_params` of each
# IMAGENET1K_V1 weight entry, shown in torchvision's model documentation).
TORCHVISION_PARAMS = {
    "vgg16": 138_357_544, "vgg16_caffe": 138_357_544, "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg19_bn": 143_678_248,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "densenet121": 7_978_856, "densenet161": 28_681_000, "densenet169": 14_149_480,
    "densenet201": 20_013_928,
}
VGG_CLASSIFIER = (25088 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)


def _classifier_params(arch: str, backbone) -> int:
    """Parameters of the ImageNet classifier that a backbone drops."""
    if arch.startswith("vgg"):
        return VGG_CLASSIFIER
    return (backbone.channels[-1] + 1) * 1000  # the final Linear of ResNet / DenseNet


def _torchvision_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """A state dict in torchvision's format: its keys, shapes and dtypes, random values.

    VGG's classifier (124M values, dropped by the backbone) is stored as a
    broadcast row so that the file stays small; every other tensor is random.
    """
    if arch.startswith("vgg"):
        with torch.device("meta"):
            tv_arch = backbones.CAFFE_VGG_WEIGHTS.get(arch, (arch,))[0]
            shapes = torchvision.models.get_model(tv_arch, weights=None).state_dict()
        state = {}
        for key, value in shapes.items():
            if key.startswith("classifier.") and key.endswith("weight"):
                state[key] = torch.randn(1, value.shape[1]).expand(value.shape)
            elif value.is_floating_point():
                state[key] = torch.randn(value.shape)
            else:  # BatchNorm's num_batches_tracked
                state[key] = torch.zeros(value.shape, dtype=value.dtype)
        return state
    return torchvision.models.get_model(arch, weights=None).state_dict()


def _to_legacy_densenet_keys(state: dict) -> dict:
    # torchvision's published DenseNet files name 'denselayer1.norm1.weight'
    # as 'denselayer1.norm.1.weight'.
    return {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in state.items()}


# The authors' deep-base ResNets load their own files: tests/test_psp_authors.py.
@pytest.mark.parametrize("arch", [a for a in list_backbones() if a not in backbones.DEEP_RESNET_ARCHS])
def test_torchvision_state_dict_loads_strictly_from_the_weights_folder(arch, tmp_path, monkeypatch):
    state = _torchvision_state_dict(arch)
    if arch.startswith("densenet"):
        # torchvision's DenseNet files predate num_batches_tracked and use legacy names.
        state = _to_legacy_densenet_keys({k: v for k, v in state.items() if "num_batches" not in k})
        assert any(".norm.1." in k for k in state)
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    path = weight_path(arch)
    assert path.parent == tmp_path and path.name == weight_url(arch).rsplit("/", 1)[-1]
    torch.save(state, path)

    backbone = build_backbone(arch, pretrained=True)

    loaded = dict(backbone.named_parameters())
    first_conv = next(name for name in loaded if name.endswith("weight") and loaded[name].dim() == 4)
    expected = next(v for k, v in state.items() if v.dim() == 4)  # the stem conv, first in both
    assert torch.equal(loaded[first_conv], expected)
    assert sum(p.numel() for p in backbone.parameters()) + _classifier_params(arch, backbone) == TORCHVISION_PARAMS[arch]
    # torchvision's names are kept: every tensor of the backbone is the file's tensor of the same key
    reference = pretrained._fix_legacy_keys(arch, state)
    ours = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours and all(torch.equal(value, reference[key]) for key, value in ours.items())


def test_vgg_fc6_fc7_come_from_the_pretrained_classifier(tmp_path):
    state = _torchvision_state_dict("vgg16")
    path = tmp_path / "my_vgg16.pth"
    torch.save(state, path)
    backbone = build_backbone("vgg16", pretrained=True, with_fc=True, weights_file=path)
    fc6, fc7 = backbone.fc6, backbone.fc7
    # torch.equal, not assert_close: the copy is exact and 100M values compare in a blink.
    assert torch.equal(fc6.weight, state["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(fc7.weight.flatten(1), state["classifier.3.weight"])
    assert torch.equal(fc7.bias, state["classifier.3.bias"])


def test_a_file_that_does_not_match_is_an_error_naming_it(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), path)
    with pytest.raises(RuntimeError, match="wrong.pth"):
        build_backbone("resnet34", pretrained=True, weights_file=path)


@pytest.mark.parametrize("arch", ["vgg16", "resnet50", "densenet121"])
def test_missing_weights_name_the_path_and_the_url(arch, tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        build_backbone(arch, pretrained=True)
    assert str(tmp_path / weight_url(arch).rsplit("/", 1)[-1]) in str(err.value)
    assert weight_url(arch) in str(err.value)


STRIDE_CASES = [pytest.param(arch, os_, id=f"{arch}-os{os_}") for arch in list_backbones()
                for os_ in ((32, 16, 8) if arch.startswith("resnet") else (32,))]


@pytest.mark.parametrize("arch, output_stride", STRIDE_CASES)
def test_declared_strides_and_channels_match_the_features(arch, output_stride):
    kwargs = {"output_stride": output_stride} if arch.startswith("resnet") else {}
    backbone = build_backbone(arch, **kwargs).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 96))
    assert len(features) == len(backbone.channels) == len(backbone.strides)
    assert backbone.strides[-1] == output_stride
    for f, c, s in zip(features, backbone.channels, backbone.strides):
        assert f.shape[1:] == (c, 64 // s, 96 // s)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_resnet_dilation_matches_torchvision(output_stride):
    ours = build_backbone("resnet50", output_stride=output_stride)
    replace = [False, output_stride == 8, True]
    reference = torchvision.models.resnet50(replace_stride_with_dilation=replace)
    convs = [(n, m) for n, m in ours.named_modules() if isinstance(m, nn.Conv2d)]
    ref_convs = dict((n, m) for n, m in reference.named_modules() if isinstance(m, nn.Conv2d))
    assert [n for n, _ in convs] == list(ref_convs)  # torchvision's names
    for name, conv in convs:
        ref = ref_convs[name]
        assert (conv.stride, conv.dilation, conv.padding) == (ref.stride, ref.dilation, ref.padding), name


def test_block_dilations_set_each_block_cyclically():
    backbone = build_backbone("resnet50", output_stride=8,
                              block_dilations={"layer3": (1, 2, 5, 9), "layer4": (5, 9, 17)})
    rates = [[m.dilation[0] for m in stage.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
             for stage in (backbone.layer3, backbone.layer4)]
    assert rates == [[1, 2, 5, 9, 1, 2], [5, 9, 17]]
    assert backbone.strides == [4, 8, 8, 8]


def test_block_dilations_need_a_dilated_stage():
    with pytest.raises(ValueError, match="layer3"):
        build_backbone("resnet18", output_stride=16, block_dilations={"layer3": (1, 2)})


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(ValueError, match="densenet121"):
        build_backbone("resnet99")


def test_densenet_legacy_key_fix_leaves_other_keys_alone():
    keys = {"features.denseblock1.denselayer1.norm.1.weight": 0,
            "features.denseblock1.denselayer1.norm.1.num_batches_tracked": 0, "features.norm5.weight": 1}
    fixed = pretrained._fix_legacy_keys("densenet121", keys)
    assert set(fixed) == {"features.denseblock1.denselayer1.norm1.weight",
                          "features.denseblock1.denselayer1.norm1.num_batches_tracked", "features.norm5.weight"}


@pytest.mark.parametrize("size", [(3, 4), (6, 6), (11, 9)])  # smaller and larger than the 7 x 7 kernel
def test_padded_conv_is_conv_with_padding(size):
    # fc6 pads its input explicitly (a CPU speed fix); function, gradients and keys stay nn.Conv2d's
    torch.manual_seed(0)
    reference = nn.Conv2d(8, 5, 7, padding=3)
    padded = PaddedConv2d(8, 5, 7, padding=3)
    padded.load_state_dict(reference.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, 8, *size, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    out, out_ref = padded(x), reference(x_ref)
    assert out.shape == out_ref.shape == (2, 5, *size)
    torch.testing.assert_close(out, out_ref)
    upstream = torch.randn_like(out)
    (out * upstream).sum().backward()
    (out_ref * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(padded.weight.grad, reference.weight.grad)


def test_vgg_fc6_keeps_the_stride_32_map_size():
    backbone = build_backbone("vgg16", with_fc=True, fc_channels=8)
    assert isinstance(backbone.fc6, PaddedConv2d)
    assert backbone(torch.randn(1, 3, 96, 160))[-1].shape == (1, 8, 3, 5)


# ---------------------------------------------------------------- module names

def test_checkpoint_keys_are_torchvisions_and_a_torchvision_resnet_loads_without_a_table():
    model = models.build_model("deeplab_v3", 21, backbone="resnet50")
    keys = model.state_dict()
    assert {"backbone.conv1.weight", "backbone.bn1.running_mean", "backbone.layer1.0.conv1.weight",
            "backbone.layer4.2.bn3.weight"} <= set(keys)
    assert not any(".stages." in key for key in keys)
    reference = torchvision.models.resnet50(weights=None).eval()  # random init, no download
    theirs = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    model.backbone.load_state_dict(theirs, strict=True)  # as it is: no key table
    backbone = build_backbone("resnet50").eval()
    backbone.load_state_dict(theirs, strict=True)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))))))
        assert torch.equal(backbone(x)[-1], expected)


@pytest.mark.parametrize("arch, kwargs, names", [
    ("vgg16", {"with_fc": True, "fc_channels": 8}, ["features.0.weight", "features.28.bias", "fc6.weight", "fc7.bias"]),
    ("vgg16_bn", {}, ["features.1.running_var", "features.41.weight"]),
    ("densenet121", {}, ["features.conv0.weight", "features.denseblock1.denselayer1.conv1.weight",
                         "features.transition3.conv.weight", "features.norm5.bias"]),
    ("resnet50_deep", {}, ["layer0.0.weight", "layer0.7.running_mean", "layer1.0.conv1.weight", "layer4.0.bn3.bias"]),
])
def test_every_family_keeps_its_names(arch, kwargs, names):
    with torch.device("meta"):
        backbone = build_backbone(arch, **kwargs)
    keys = backbone.state_dict()
    assert set(names) <= set(keys) and not any(key.startswith("stages.") for key in keys)
    assert len(backbone.stages) == len(backbone.stage_names) == len(backbone.channels)


def test_checkpoints_with_the_former_stage_keys_still_load():
    # Before the backbone kept torchvision's names, stage 0 of a ResNet was
    # Sequential(conv1, bn1, relu, maxpool, layer1) and stages 1..3 were layer2..4.
    former = (("backbone.conv1.", "backbone.stages.0.0."), ("backbone.bn1.", "backbone.stages.0.1."),
              ("backbone.layer1.", "backbone.stages.0.4."), ("backbone.layer2.", "backbone.stages.1."),
              ("backbone.layer3.", "backbone.stages.2."), ("backbone.layer4.", "backbone.stages.3."))
    source = models.build_model("psp_net", 3, backbone="resnet18", width=8)
    old = {}
    for key, value in source.state_dict().items():
        new = next((n + key[len(o):] for o, n in former if key.startswith(o)), key)
        old[new] = value
    assert sum(key.startswith("backbone.stages.") for key in old) > 100
    # utils.checkpoint.migrate renames them as load_checkpoint reads a version-1 file
    migrated = migrate({"format": "semseg-checkpoint-v1", "model": "psp_net", "num_classes": 3,
                        "model_kwargs": {"backbone": "resnet18", "width": 8}, "state_dict": old})
    target = models.build_model("psp_net", 3, backbone="resnet18", width=8)
    target.load_state_dict(migrated["state_dict"], strict=True)
    for (key, value), (other, loaded) in zip(source.state_dict().items(), target.state_dict().items()):
        assert key == other and torch.equal(value, loaded), key
