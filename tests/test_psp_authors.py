"""The authors' PSPNet (hszhao/semseg): network, weights, converter, test protocol, recipe.

Function equality is shown against an *independent* computation written in this file
from the facts of their code (model/resnet.py, model/pspnet.py, tool/test.py): a
functional forward pass that reads a state dict under *their* key names, and a loop
version of their test's crop-and-average procedure. Weights and BatchNorm statistics
are random and generated here under their names and shapes, never from our model.
"""
import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import eval as eval_script
import models
import predict as predict_script
from tools.fake_data import make
from models import psp_net
from models.backbones import SEMSEG_DRIVE_URL, build_backbone, weight_path
from models.input_norm import IMAGENET, input_norm_of
from models.layers import align_corners_of, resnet_depth
from utils.checkpoint import load_checkpoint, model_from_checkpoint
from runs import train_until_killed
from utils.engine import TrainConfig, Trainer
from utils.inference import InferenceConfig, predict_logits
from utils.transforms import BLUR_SIGMA, train_transforms
from utils.inference import semseg_probabilities

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BINS = (1, 2, 3, 6)


# ---------------------------------------------------------------- their checkpoint, written here

def semseg_state_dict(layers: int, classes: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights and BatchNorm statistics under hszhao/semseg's PSPNet key names and shapes.

    Shapes from their model/resnet.py (deep base: 3x3 convs 3->64 (stride 2), 64->64, 64->128;
    Bottleneck conv1 1x1, conv2 3x3, conv3 1x1 to 4 x planes; downsample in the first block of
    each layer, layer1 included since its input has 128 channels) and model/pspnet.py (ppm bins
    of 512 channels: pool, conv, bn, relu; cls and aux: conv3x3, bn, relu, dropout, conv1x1).
    The last BN of each block is kept small so that the 101-layer net stays finite, and the
    classifiers are scaled for logits of order one.
    """
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name: str, cout: int, cin: int, k: int, bias: bool = False, gain: float = 1.0) -> None:
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=gen) * gain * math.sqrt(2 / (cin * k * k))
        if bias:
            sd[f"{name}.bias"] = torch.randn(cout, generator=gen) * 0.1

    def bn(name: str, c: int, small: bool = False) -> None:
        low, high = (0.2, 0.5) if small else (0.5, 1.5)
        sd[f"{name}.weight"] = torch.rand(c, generator=gen) * (high - low) + low
        sd[f"{name}.bias"] = torch.randn(c, generator=gen) * 0.1
        sd[f"{name}.running_mean"] = torch.randn(c, generator=gen) * 0.1
        sd[f"{name}.running_var"] = torch.rand(c, generator=gen) * 1.5 + 0.5
        sd[f"{name}.num_batches_tracked"] = torch.tensor(1000)

    conv("layer0.0", 64, 3, 3), bn("layer0.1", 64)
    conv("layer0.3", 64, 64, 3), bn("layer0.4", 64)
    conv("layer0.6", 128, 64, 3), bn("layer0.7", 128)
    inplanes = 128
    for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), BLOCKS[layers]), start=1):
        for j in range(blocks):
            p = f"layer{index}.{j}"
            conv(f"{p}.conv1", planes, inplanes, 1), bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3), bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * 4, planes, 1), bn(f"{p}.bn3", planes * 4, small=True)
            if j == 0:
                conv(f"{p}.downsample.0", planes * 4, inplanes, 1), bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    for b in range(len(BINS)):
        conv(f"ppm.features.{b}.1", 512, 2048, 1), bn(f"ppm.features.{b}.2", 512)
    conv("cls.0", 512, 4096, 3), bn("cls.1", 512)
    conv("cls.4", classes, 512, 1, bias=True, gain=3.0)
    conv("aux.0", 256, 1024, 3), bn("aux.1", 256)
    conv("aux.4", classes, 256, 1, bias=True, gain=3.0)
    return {f"module.{k}": v for k, v in sd.items()}  # as their (Distributed)DataParallel saves it


# ---------------------------------------------------------------- their forward, written here

def reference_pspnet(sd: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(main, aux) logits of their PSPNet in eval mode, from their state dict, functionally.

    Facts used: layer0 = conv-bn-relu x 3, max pool 3/2/1; Bottleneck strides on conv2;
    layer3 / layer4: every block's conv2 at dilation = padding 2 / 4 and stride 1 (downsample
    stride 1 too); PPM cat([x, up(bins)]) with bilinear align_corners=True; cls on 4096
    channels; output resized, align_corners=True, to ((H - 1) / 8 * 8 + 1) = H for 8k + 1 sizes.
    """
    sd = {k.removeprefix("module."): v for k, v in sd.items()}

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], training=False, eps=1e-5)

    def block(t, p, stride, dilation, downsample):
        out = F.relu(bn(F.conv2d(t, sd[f"{p}.conv1.weight"]), f"{p}.bn1"))
        out = F.relu(bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=dilation,
                                 dilation=dilation), f"{p}.bn2"))
        out = bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), f"{p}.bn3")
        residual = bn(F.conv2d(t, sd[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1") \
            if downsample else t
        return F.relu(out + residual)

    height, width = x.shape[-2:]
    t = F.relu(bn(F.conv2d(x, sd["layer0.0.weight"], stride=2, padding=1), "layer0.1"))
    t = F.relu(bn(F.conv2d(t, sd["layer0.3.weight"], padding=1), "layer0.4"))
    t = F.relu(bn(F.conv2d(t, sd["layer0.6.weight"], padding=1), "layer0.7"))
    t = F.max_pool2d(t, 3, 2, 1)
    layer3 = None
    for index, (stride, dilation) in enumerate(((1, 1), (2, 1), (1, 2), (1, 4)), start=1):
        blocks = len({k.split(".")[1] for k in sd if k.startswith(f"layer{index}.")})
        for j in range(blocks):
            t = block(t, f"layer{index}.{j}", stride if j == 0 else 1, dilation, j == 0)
        if index == 3:
            layer3 = t
    size = t.shape[-2:]
    pyramid = [t]
    for b, bins in enumerate(BINS):
        y = F.adaptive_avg_pool2d(t, bins)
        y = F.relu(bn(F.conv2d(y, sd[f"ppm.features.{b}.1.weight"]), f"ppm.features.{b}.2"))
        pyramid.append(F.interpolate(y, size, mode="bilinear", align_corners=True))
    out_size = ((height - 1) // 8 * 8 + 1, (width - 1) // 8 * 8 + 1)

    def classifier(features, name):
        y = F.relu(bn(F.conv2d(features, sd[f"{name}.0.weight"], padding=1), f"{name}.1"))
        y = F.conv2d(y, sd[f"{name}.4.weight"], sd[f"{name}.4.bias"])
        return F.interpolate(y, out_size, mode="bilinear", align_corners=True)

    return classifier(torch.cat(pyramid, 1), "cls"), classifier(layer3, "aux")


def _double(sd: dict) -> dict:
    return {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}


def _load_converter():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", ROOT / "tools" / "convert_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOLERANCE = 1e-9  # float64 on both sides (measured: 0.0); logits std 5 (ResNet-50) to 30 (-101)


@pytest.mark.parametrize("layers", [50, 101])
def test_converted_weights_compute_their_function(layers):
    theirs = semseg_state_dict(layers, classes=5, seed=layers)
    assert psp_net.semseg_backbone(theirs) == f"resnet{layers}_deep"
    ours = models.build_model("psp_net", 5, backbone=f"resnet{layers}_deep", **psp_net.SEMSEG_OPTIONS)
    ours.load_state_dict(psp_net.from_semseg(theirs), strict=True)
    ours = ours.double().eval()
    ours.training = True  # top-level flag only: 'aux' is returned while every layer runs as in eval
    x = torch.randn(2, 3, 33, 41, dtype=torch.float64)  # 8k + 1, as their crops
    with torch.no_grad():
        got = ours(x)
        expected = reference_pspnet(_double(theirs), x)
    for key, reference in zip(("out", "aux"), expected):
        assert got[key].shape == reference.shape == (2, 5, 33, 41)
        assert reference.isfinite().all() and reference.std() > 0.1, "degenerate logits prove nothing"
        assert (got[key] - reference).abs().max() < TOLERANCE, key


def test_the_reference_tells_each_authors_option_apart():
    """Each of the four options changes the function by far more than the tolerance, so the
    equality above could not hold with any of them wrong."""
    theirs = semseg_state_dict(50, classes=5)
    x = torch.randn(1, 3, 33, 33, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_pspnet(_double(theirs), x)[0]
    converted = psp_net.from_semseg(theirs)
    for option, value in (("dilate_first_block", False), ("align_corners", False)):
        other = models.build_model("psp_net", 5, backbone="resnet50_deep", **{**psp_net.SEMSEG_OPTIONS, option: value})
        other.load_state_dict(converted, strict=True)
        with torch.no_grad():
            assert (other.double().eval()(x)["out"] - expected).abs().max() > 1e-3, option
    # without BatchNorm in the 1x1 bin the weights do not even fit
    plain = models.build_model("psp_net", 5, backbone="resnet50_deep", **{**psp_net.SEMSEG_OPTIONS,
                                                                          "bin_batch_norm": False})
    with pytest.raises(RuntimeError):
        plain.load_state_dict(converted, strict=True)
    # a 5% change of one running variance deep in layer3 moves the logits beyond the tolerance
    nudged = dict(theirs)
    nudged["module.layer3.4.bn2.running_var"] = theirs["module.layer3.4.bn2.running_var"] * 1.05
    with torch.no_grad():
        assert (reference_pspnet(_double(nudged), x)[0] - expected).abs().max() > 1e3 * TOLERANCE


def test_unknown_keys_and_depths_are_errors():
    theirs = semseg_state_dict(50, classes=3)
    with pytest.raises(KeyError, match="extra"):
        psp_net.from_semseg({**theirs, "module.extra.weight": torch.zeros(1)})
    shallow = {k: v for k, v in theirs.items() if not k.startswith("module.layer3.5.")}
    with pytest.raises(ValueError, match="5 blocks"):
        psp_net.semseg_backbone(shallow)


def test_one_resnet_depth_reader_serves_both_converters(tmp_path):
    for blocks, depth in ((6, 50), (23, 101), (36, 152)):
        keys = {f"backbone.layer3.{i}.conv1.weight": torch.zeros(1) for i in range(blocks)}
        assert resnet_depth(keys, "backbone.layer3.") == depth
        assert resnet_depth({k.removeprefix("backbone."): v for k, v in keys.items()}) == depth
    with pytest.raises(ValueError, match="backbone.layer3 has 5 blocks: not a ResNet"):
        resnet_depth({f"backbone.layer3.{i}.conv1.weight": torch.zeros(1) for i in range(5)}, "backbone.layer3.")
    deepest = {f"module.layer3.{i}.conv1.weight": torch.zeros(1) for i in range(36)}
    with pytest.raises(ValueError, match="a ResNet-152: not hszhao/semseg's PSPNet-50 or -101"):
        psp_net.semseg_backbone(deepest)
    src = tmp_path / "deeplabv3_resnet152.pth"
    torch.save({k.replace("module.", "backbone."): v for k, v in deepest.items()}, src)
    with pytest.raises(SystemExit, match="not torchvision's deeplabv3_resnet50 or _resnet101 state dict "
                                         r"\(a ResNet-152\)"):
        _load_converter().main(["torchvision-deeplabv3", str(src), str(tmp_path / "ours.pth")])


# ---------------------------------------------------------------- the converter and the scripts

@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Their PSPNet-50 checkpoint for VOC (21 classes) as tool/train.py saves it, and ours."""
    base = tmp_path_factory.mktemp("convert")
    theirs = semseg_state_dict(50, classes=21, seed=7)
    src = base / "train_epoch_50.pth"
    torch.save({"epoch": 50, "state_dict": theirs,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0, "params": [0]}]}}, src)
    dst = _load_converter().main(["semseg-pspnet", str(src), str(base / "pspnet50_voc.pth"), "--dataset", "voc"])
    return theirs, dst, base


def test_converter_writes_a_checkpoint_of_ours_with_everything_inside(converted):
    theirs, dst, _ = converted
    state = load_checkpoint(dst)
    assert state["model"] == "psp_net" and state["num_classes"] == 21 and state["dataset"] == "voc"
    assert state["model_kwargs"] == {**psp_net.SEMSEG_OPTIONS, "backbone": "resnet50_deep"}
    assert state["input_norm"] == IMAGENET.to_dict()
    assert state["classes"][0] == "background" and len(state["palette"]) == 21
    config = state["config"]
    assert (config["val_protocol"], config["val_long_side"], config["val_tile"]) == ("semseg", 512, 473)
    assert state["converted_from"]["epoch"] == 50
    model = model_from_checkpoint(state).double().eval()
    assert align_corners_of(model) is True and input_norm_of(model) == IMAGENET
    x = torch.randn(1, 3, 41, 33, dtype=torch.float64)
    with torch.no_grad():
        assert (model(x)["out"] - reference_pspnet(_double(theirs), x)[0]).abs().max() < TOLERANCE


def test_converter_errors_name_the_problem(converted, tmp_path):
    convert = _load_converter().main
    _, _, base = converted
    with pytest.raises(SystemExit, match="21 classes, but --dataset cityscapes has 19"):
        convert(["semseg-pspnet", str(base / "train_epoch_50.pth"), str(tmp_path / "x.pth"), "--dataset", "cityscapes"])
    with pytest.raises(SystemExit, match="does not exist"):
        convert(["semseg-pspnet", str(tmp_path / "missing.pth"), str(tmp_path / "x.pth"), "--dataset", "voc"])
    torch.save({"weights": {}}, tmp_path / "foreign.pth")
    with pytest.raises(SystemExit, match="expected a dict with 'state_dict'"):
        convert(["semseg-pspnet", str(tmp_path / "foreign.pth"), str(tmp_path / "x.pth"), "--dataset", "voc"])
    with pytest.raises(SystemExit):  # argparse: --dataset is required for this source
        convert(["semseg-pspnet", str(base / "train_epoch_50.pth"), str(tmp_path / "x.pth")])


def test_converter_wraps_torchvision_deeplabv3(tmp_path):
    import torchvision
    theirs = torchvision.models.get_model("deeplabv3_resnet50", weights=None, weights_backbone=None,
                                          num_classes=21, aux_loss=True).eval()
    torch.save(theirs.state_dict(), tmp_path / "deeplabv3.pth")
    dst = _load_converter().main(["torchvision-deeplabv3", str(tmp_path / "deeplabv3.pth"), str(tmp_path / "ours.pth")])
    model = model_from_checkpoint(load_checkpoint(dst)).eval()
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert (model(x)["out"] - theirs(x)["out"]).abs().max() < 1e-4


# ---------------------------------------------------------------- their test protocol

def reference_protocol(forward, image: torch.Tensor, classes: int, crop: int, base_size: int) -> torch.Tensor:
    """Their tool/test.py for one image [3, H, W] (normalised) at scale 1, written as loops:
    long side to base_size, centre padding with the mean (zero here), grid of
    ceil((new - crop) / stride) + 1 crops per axis at stride ceil(2/3 crop), each crop's end
    clamped to the border, flip-averaged softmax, padding cut, resized back to H x W."""
    _, h, w = image.shape
    if h > w:
        new_h, new_w = base_size, round(base_size / h * w)
    else:
        new_h, new_w = round(base_size / w * h), base_size
    scaled = F.interpolate(image[None], (new_h, new_w), mode="bilinear", align_corners=False)[0]
    pad_h, pad_w = max(crop - new_h, 0), max(crop - new_w, 0)
    ph, pw = int(pad_h / 2), int(pad_w / 2)
    padded = F.pad(scaled, (pw, pad_w - pw, ph, pad_h - ph))
    _, full_h, full_w = padded.shape
    stride = int(np.ceil(crop * 2 / 3))
    grid_h = int(np.ceil(float(full_h - crop) / stride) + 1)
    grid_w = int(np.ceil(float(full_w - crop) / stride) + 1)
    total = torch.zeros(classes, full_h, full_w, dtype=torch.float64)
    count = torch.zeros(full_h, full_w, dtype=torch.float64)
    for i in range(grid_h):
        for j in range(grid_w):
            e_h = min(i * stride + crop, full_h)
            e_w = min(j * stride + crop, full_w)
            s_h, s_w = e_h - crop, e_w - crop
            tile = padded[:, s_h:e_h, s_w:e_w][None]
            p = F.softmax(forward(torch.cat([tile, tile.flip(3)])).double(), dim=1)
            total[:, s_h:e_h, s_w:e_w] += (p[0] + p[1].flip(2)) / 2
            count[s_h:e_h, s_w:e_w] += 1
    total = (total / count)[:, ph:ph + new_h, pw:pw + new_w]
    return F.interpolate(total[None], (h, w), mode="bilinear", align_corners=False)[0]


class PositionNet(torch.nn.Module):
    """A small position-dependent network (convolution plus a ramp over the crop): any crop
    placed at the wrong offset, or flipped the wrong way, changes its output."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, classes, 5, padding=2)

    def forward(self, x):
        classes = torch.arange(self.conv.out_channels).view(1, -1, 1, 1)
        ramp = torch.linspace(-2, 2, x.shape[-1]).view(1, 1, 1, -1) * classes
        return {"out": self.conv(x) + ramp}


@pytest.mark.parametrize("size,base_size", [((50, 70), 60), ((70, 50), 60), ((30, 40), 24)])
def test_semseg_protocol_matches_their_loops(size, base_size):
    torch.manual_seed(0)
    net = PositionNet(4).double().eval()
    image = torch.randn(3, *size, dtype=torch.float64)
    with torch.no_grad():
        expected = reference_protocol(lambda t: net(t)["out"], image, 4, crop=33, base_size=base_size)
        cfg = InferenceConfig(protocol="semseg", tile=33, stride=math.ceil(33 * 2 / 3), long_side=base_size,
                              tile_batch=3)
        got = predict_logits(net, image[None], 4, cfg)[0]
    assert got.shape == expected.shape == (4, *size)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
    assert torch.allclose(got.sum(0), torch.ones(size, dtype=torch.float64))  # probabilities


def test_semseg_protocol_averages_probabilities_not_logits():
    net = PositionNet(3).double().eval()
    image = torch.randn(1, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        probabilities = semseg_probabilities(lambda t: net(t)["out"], image, 3, 33, 22, 0)
        logits_route = predict_logits(net, image, 3, InferenceConfig(mode="slide", tile=33, stride=22, flip=True))
    assert not torch.allclose(probabilities, logits_route.softmax(1), atol=1e-6)


def test_eval_flags_select_the_protocol_and_its_stride():
    args = eval_script.parse_args(["x.pth", "--protocol", "semseg", "--long-side", "512", "--tile", "473"])
    from utils.cli import inference_overrides
    cfg = InferenceConfig.from_train_config(dataclasses.asdict(TrainConfig()), **inference_overrides(args))
    assert (cfg.protocol, cfg.long_side, cfg.tile, cfg.stride) == ("semseg", 512, 473, 316)
    default = InferenceConfig.from_train_config(dataclasses.asdict(TrainConfig()),
                                                **inference_overrides(eval_script.parse_args(["x.pth"])))
    assert default.protocol == "default" and default.stride == TrainConfig().val_stride
    with pytest.raises(SystemExit):
        eval_script.parse_args(["x.pth", "--protocol", "theirs"])
    with pytest.raises(SystemExit):
        eval_script.parse_args(["x.pth", "--long-side", "-1"])


def test_eval_and_predict_take_the_converted_checkpoint(converted, tmp_path, capsys):
    theirs, dst, _ = converted
    root = make("voc", tmp_path, size=(40, 48), n=2)
    small = ["--long-side", "48", "--tile", "33", "--device", "cpu"]  # the protocol at a CPU-sized crop
    metrics = eval_script.main([str(dst), "--data-root", str(root), "--workers", "0", *small])
    assert 0 <= metrics["mean_iu"] <= 1
    assert "semseg protocol: long side 48, crops 33 at stride 22, flip" in capsys.readouterr().out
    image_path = sorted((root / "JPEGImages").glob("*.jpg"))[0]
    written = predict_script.main([str(dst), str(image_path), "--out", str(tmp_path / "out"), *small])
    prediction = np.asarray(Image.open(written[0]))
    # the same pixels through their normalisation (ImageNet mean / std x 255 on 0..255 RGB),
    # their network and their protocol, all written in this file
    rgb = torch.from_numpy(np.array(Image.open(image_path).convert("RGB"))).permute(2, 0, 1).double()
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(3, 1, 1) * 255
    with torch.no_grad():
        expected = reference_protocol(lambda t: reference_pspnet(_double(theirs), t)[0], (rgb - mean) / std, 21,
                                      crop=33, base_size=48).argmax(0).numpy()
    assert prediction.shape == expected.shape == (40, 48)
    assert (prediction == expected).mean() > 0.99  # float32 inference against float64: near-ties may differ


# ---------------------------------------------------------------- backbone weights and training options

def _semseg_imagenet_file(path: Path, layers: int = 50) -> dict:
    """Their ImageNet file: their ResNet's names (conv1..3, bn1..3, layer1..4, fc), random values."""
    seg = {k.removeprefix("module."): v for k, v in semseg_state_dict(layers, classes=2).items()}
    names = {"layer0.0": "conv1", "layer0.1": "bn1", "layer0.3": "conv2", "layer0.4": "bn2", "layer0.6": "conv3",
             "layer0.7": "bn3"}
    state = {}
    for key, value in seg.items():
        prefix, _, rest = key.partition(".")
        if key.startswith("layer0."):
            head, _, rest = key[len("layer0."):].partition(".")
            state[f"{names['layer0.' + head]}.{rest}"] = value
        elif prefix.startswith("layer"):
            state[key] = value
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 2048), torch.randn(1000)
    torch.save(state, path)
    return state


def test_deep_base_backbone_loads_their_imagenet_file_from_seg_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    assert weight_path("resnet50_deep") == tmp_path / "resnet50_v2.pth"
    state = _semseg_imagenet_file(tmp_path / "resnet50_v2.pth")
    backbone = build_backbone("resnet50_deep", pretrained=True, output_stride=8, dilate_first_block=True)
    stem = backbone.layer0  # their PSPNet's layer0, indices included
    assert torch.equal(stem[0].weight, state["conv1.weight"]) and torch.equal(stem[6].weight, state["conv3.weight"])
    assert torch.equal(backbone.layer1[0].downsample[0].weight, state["layer1.0.downsample.0.weight"])
    assert torch.equal(backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    assert backbone.channels == [256, 512, 1024, 2048] and backbone.strides == [4, 8, 8, 8]
    assert [b.conv2.dilation for b in backbone.layer3] == [(2, 2)] * 6  # every block, as theirs
    assert [b.conv2.dilation for b in backbone.layer4] == [(4, 4)] * 3


def test_missing_or_foreign_deep_base_file_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        models.build_model("psp_net", 3, backbone="resnet101_deep", pretrained=True)
    assert str(tmp_path / "resnet101_v2.pth") in str(err.value) and SEMSEG_DRIVE_URL in str(err.value)
    state = _semseg_imagenet_file(tmp_path / "resnet50_v2.pth")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "resnet50_v2.pth")
    with pytest.raises(RuntimeError, match="resnet50_v2.pth"):
        build_backbone("resnet50_deep", pretrained=True)


def test_default_dilation_is_unchanged_and_the_option_dilates_every_block():
    plain = build_backbone("resnet18", output_stride=8)
    assert [b.conv1.dilation for b in plain.layer3] == [(1, 1), (2, 2)]
    authors = build_backbone("resnet18", output_stride=8, dilate_first_block=True)
    assert [b.conv1.dilation for b in authors.layer3] == [(2, 2), (2, 2)]
    assert [b.conv1.dilation for b in authors.layer4] == [(4, 4), (4, 4)]


def _psp_config(run_dir, **overrides) -> TrainConfig:
    base = TrainConfig(model="psp_net", backbone="resnet18", model_kwargs={"width": 8, "bin_batch_norm": True,
                                                                          "align_corners": True},
                       dataset="shapes", dataset_kwargs={"size": 33, "length": 4}, iters=4, batch_size=2,
                       crop_size=33, scale_min=1.0, scale_max=1.0, val_every=2, val_batch_size=4, workers=0,
                       device="cpu", progress=False, run_dir=str(run_dir), head_lr_mult=10.0)
    return dataclasses.replace(base, **overrides)


def test_bin_batch_norm_refuses_a_batch_of_one_before_training(tmp_path):
    with pytest.raises(SystemExit, match="--batch-size 1.*at least 2 images"):
        Trainer(_psp_config(tmp_path, batch_size=1))
    model = models.build_model("psp_net", 3, backbone="resnet18", width=8, bin_batch_norm=True).train()
    with pytest.raises(ValueError, match="batch of 1"):
        model(torch.randn(1, 3, 33, 33))
    models.build_model("psp_net", 3, backbone="resnet18", width=8).train()(torch.randn(1, 3, 33, 33))  # default trains


def test_head_lr_mult_groups_scale_together_and_resume(tmp_path, monkeypatch):
    whole = Trainer(_psp_config(tmp_path / "a"))
    backbone, head = whole.optimizer.param_groups
    assert (backbone["lr"], head["lr"]) == (0.01, pytest.approx(0.1))
    n_backbone = sum(p.numel() for p in whole.model.backbone.parameters())
    assert sum(p.numel() for p in backbone["params"]) == n_backbone
    assert sum(p.numel() for p in head["params"]) == sum(p.numel() for p in whole.model.parameters()) - n_backbone
    whole.fit()

    train_until_killed(Trainer, _psp_config(tmp_path / "b"), 2, monkeypatch)
    resumed = Trainer(_psp_config(tmp_path / "b", resume=True))
    factor = (1 - 2 / 4) ** 0.9  # the poly schedule scales both groups
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [pytest.approx(0.01 * factor),
                                                                  pytest.approx(0.1 * factor)]
    resumed.fit()
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_head_lr_mult_needs_a_backbone(tmp_path):
    cfg = _psp_config(tmp_path, model="u_net", backbone=None, model_kwargs={"width": 4, "depth": 2})
    with pytest.raises(SystemExit, match="no pretrained backbone"):
        Trainer(cfg)


def test_rotation_fills_with_the_mean_colour_and_ignore(tmp_path):
    from torchvision import tv_tensors
    image = tv_tensors.Image(torch.full((3, 64, 64), 200, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(64, 64, dtype=torch.int64))
    transform = train_transforms(64, (1.0, 1.0), hflip=False, rotate=30)
    untouched, _ = train_transforms(64, (1.0, 1.0), hflip=False)(image, mask)
    outcomes, filled_seen = set(), False
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        rotated = not torch.equal(out_image, untouched)
        outcomes.add(rotated)
        if rotated:  # what left the square is ignored, and filled with the mean colour (zero once normalised)
            assert out_mask[32, 32] == 1 and set(out_mask.unique().tolist()) <= {1, 255}
            filled = out_image.abs().amax(0) < 0.02
            filled_seen |= bool(filled.any())
            assert (out_mask[filled] == 255).all()
        else:
            assert (out_mask == 1).all()
    assert outcomes == {True, False} and filled_seen  # about half of the images, as their RandRotate


def test_blur_is_their_5x5_gaussian_and_leaves_masks_alone():
    from torchvision import tv_tensors
    impulse = torch.zeros(3, 15, 15, dtype=torch.uint8)
    impulse[:, 7, 7] = 255
    mask = tv_tensors.Mask(torch.arange(225).view(15, 15) % 3)
    transform = train_transforms(15, (1.0, 1.0), hflip=False, blur=1.0, norm=dataclasses.replace(
        IMAGENET, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))
    out_image, out_mask = transform(tv_tensors.Image(impulse), mask)
    assert torch.equal(out_mask, mask)
    # OpenCV's kernel for ksize 5, sigma 0: sigma = 0.3 * ((5 - 1) / 2 - 1) + 0.8 = 1.1
    assert BLUR_SIGMA == pytest.approx(0.3 * ((5 - 1) / 2 - 1) + 0.8)
    g = torch.exp(-torch.arange(-2, 3, dtype=torch.float64) ** 2 / (2 * 1.1 ** 2))
    g = g / g.sum()
    expected = torch.zeros(15, 15, dtype=torch.float64)
    expected[5:10, 5:10] = torch.outer(g, g)
    torch.testing.assert_close(out_image[0].double(), expected, atol=1 / 255, rtol=0)


def test_training_config_rejects_bad_recipe_flags():
    for field, value, message in (("head_lr_mult", 0.0, "--head-lr-mult"), ("blur", 1.5, "--blur"),
                                  ("rotate", -1.0, "--rotate"), ("val_long_side", -2, "--val-long-side")):
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(TrainConfig(), **{field: value}).validate()
