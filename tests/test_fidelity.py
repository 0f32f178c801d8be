"""The papers' and the authors' code's details, where a deviation would cost accuracy
or make eval.py disagree with the engine's own validation."""
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

import eval as eval_script
import models
import predict as predict_script
from models import backbones
from models.backbones import build_backbone, weight_path
from models.input_norm import CAFFE_VGG, IMAGENET, InputNorm, input_norm_of
from utils.checkpoint import load_checkpoint, migrate
from utils.cli import parse_config
from utils.engine import TrainConfig, Trainer
from utils.inference import InferenceConfig, predict_logits
import utils.predictor as predictor_module
from utils.transforms import eval_transforms, train_transforms
from utils.inference import sliding_window

ROOT = Path(__file__).resolve().parents[1]


def script_config(pair: str) -> TrainConfig:
    return runpy.run_path(str(ROOT / "train" / pair / "train.py"), run_name="script_under_test")["cfg"]


# ---------------------------------------------------------------- 1-3: FCN

@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
@pytest.mark.parametrize("backbone, kwargs", [("vgg16", {"fc_channels": 32}), ("resnet18", {}),
                                              ("densenet121", {})])
def test_a_fresh_fcn_outputs_exactly_zero_logits(name, backbone, kwargs):
    # The authors' Caffe nets zero-initialise every score layer, the main one included.
    model = models.build_model(name, 5, backbone=backbone, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 45, 70))["out"]
    assert out.shape == (2, 5, 45, 70)
    assert torch.count_nonzero(out) == 0


def test_fcn_fc6_fc7_use_elementwise_dropout_as_caffe():
    fc = build_backbone("vgg16", with_fc=True, fc_channels=16).stages[-1]
    drops = [m for m in fc if "Dropout" in type(m).__name__]
    assert len(drops) == 2 and all(type(m) is nn.Dropout and m.p == 0.5 for m in drops)
    drops[0].train()
    torch.manual_seed(0)
    out = drops[0](torch.ones(1, 64, 8, 8))
    zero_per_channel = (out == 0).flatten(2).float().mean(-1)
    # element-wise: no channel is dropped as a whole, yet about half of all values are
    assert zero_per_channel.max() < 1 and 0.3 < (out == 0).float().mean() < 0.7


@pytest.mark.parametrize("name, scales", [("fcn16s", [0.01]), ("fcn8s", [0.01, 0.0001])])
def test_at_once_fcn_scales_pool4_and_pool3_before_their_score_layers(name, scales):
    model = models.build_model(name, 3, fc_channels=16, at_once=True).eval()
    features, seen = {}, {}
    model.backbone.register_forward_hook(lambda m, i, out: features.update(out=out))
    for k, conv in enumerate(model.skip_scores):
        conv.register_forward_pre_hook(lambda m, i, k=k: seen.__setitem__(k, i[0]))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for k, (index, scale) in enumerate(zip(model.skip_index, scales)):
        assert model.backbone.strides[index] == (16, 8)[k]
        torch.testing.assert_close(seen[k], features["out"][index] * scale)
    plain = models.build_model(name, 3, fc_channels=16)
    assert plain.skip_scales == [1.0] * len(scales)


def test_at_once_needs_skips():
    with pytest.raises(ValueError, match="FCN-16s and FCN-8s"):
        models.build_model("fcn32s", 3, fc_channels=16, at_once=True)


def test_one_stage_fcn_scripts_use_at_once_and_staged_ones_document_it():
    for script in sorted((ROOT / "train").glob("*/train.py")):
        cfg = script_config(script.parent.name)
        if cfg.model not in ("fcn16s", "fcn8s"):
            continue
        doc = script.read_text().split('"""')[1]
        if cfg.model_kwargs.get("at_once"):
            continue
        # the staged VOC recipe: --init-from the coarser net, and the one-go alternative spelt out
        assert "--init-from" in doc and '"at_once": true' in doc, script


# ---------------------------------------------------------------- 4: Caffe VGG16 and input normalisation

def _caffe_vgg16_file(path: Path) -> dict:
    """A file laid out as jcjohnson's converted Caffe VGG16: classifier Linear layers numbered 1, 4, 6."""
    with torch.device("meta"):
        shapes = torchvision.models.vgg16().state_dict()
    state = {}
    for key, value in shapes.items():
        key = key.replace("classifier.0.", "classifier.1.").replace("classifier.3.", "classifier.4.")
        small = key.startswith("classifier.") and key.endswith("weight")
        state[key] = torch.randn(1, value.shape[1]).expand(value.shape) if small else torch.randn(value.shape)
    torch.save(state, path)
    return state


def test_vgg16_caffe_loads_the_converted_caffe_file_and_expects_bgr_0_255(tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    assert weight_path("vgg16_caffe") == tmp_path / "vgg16-00b39a1b.pth"
    state = _caffe_vgg16_file(tmp_path / "vgg16-00b39a1b.pth")
    model = models.build_model("fcn32s", 21, backbone="vgg16_caffe", pretrained=True)
    assert torch.equal(model.backbone.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.backbone.fc6.weight, state["classifier.1.weight"].reshape(4096, 512, 7, 7))
    assert input_norm_of(model) == CAFFE_VGG
    assert input_norm_of(models.build_model("seg_net", 3, backbone="vgg16_caffe")) == CAFFE_VGG
    for other in ("fcn32s", "u_net", "psp_net", "seg_net"):
        assert input_norm_of(models.build_model(other, 3, **({"fc_channels": 8} if other == "fcn32s" else {}))) \
            == IMAGENET


def test_missing_caffe_vgg16_names_the_file_and_its_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        build_backbone("vgg16_caffe", pretrained=True)
    assert str(tmp_path / "vgg16-00b39a1b.pth") in str(err.value)
    assert backbones.CAFFE_VGG_WEIGHTS["vgg16_caffe"][1] in str(err.value)


def test_caffe_normalisation_is_bgr_0_255_minus_the_means_and_round_trips():
    rgb = torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2).clone()
    image, _ = eval_transforms(norm=CAFFE_VGG)(tv_tensors.Image(rgb), tv_tensors.Mask(torch.zeros(2, 2)))
    expected = torch.tensor([30 - 103.939, 20 - 116.779, 10 - 123.68]).view(3, 1, 1)
    torch.testing.assert_close(image.as_subclass(torch.Tensor), expected.expand(3, 2, 2), atol=1e-3, rtol=0)
    assert torch.equal(CAFFE_VGG.denormalize(image), rgb)
    assert InputNorm.from_dict(CAFFE_VGG.to_dict()) == CAFFE_VGG
    # checkpoints written before it was recorded: their networks all took ImageNet's
    assert InputNorm.from_dict(migrate({"format": "semseg-checkpoint-v1"})["input_norm"]) == IMAGENET


def _shapes_config(tmp_path, **overrides) -> TrainConfig:
    base = dict(model="seg_net", backbone="vgg16_caffe", dataset="shapes", dataset_kwargs={"size": 32, "length": 4},
                iters=2, batch_size=2, crop_size=32, scale_min=1.0, scale_max=1.0, val_every=2,
                val_batch_size=2, optimizer="adamw", lr=1e-3, workers=0, device="cpu", progress=False,
                run_dir=str(tmp_path / "run"))
    base.update(overrides)
    return TrainConfig(**base)


def test_the_checkpoint_records_the_normalisation_and_eval_and_predict_apply_it(tmp_path, monkeypatch):
    trainer = Trainer(_shapes_config(tmp_path))
    image, _ = trainer.train_set[0]
    assert image.abs().max() > 10  # 0..255 minus the means (ImageNet-normalised pixels stay within 3)
    trainer.fit()
    best = tmp_path / "run" / "best.pth"
    state = load_checkpoint(best)
    assert InputNorm.from_dict(state["input_norm"]) == CAFFE_VGG
    used = []
    real = predictor_module.eval_transforms  # eval.py and predict.py both normalise through the Predictor
    monkeypatch.setattr(predictor_module, "eval_transforms", lambda *a, **k: used.append(k["norm"])
                        or real(*a, **k))
    metrics = eval_script.main([str(best), "--device", "cpu", "--workers", "0"])
    assert metrics["mean_iu"] == state["metrics"]["mean_iu"]
    picture = tmp_path / "in.png"
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(picture)
    predict_script.main([str(best), str(picture), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert used == [CAFFE_VGG, CAFFE_VGG]


# ---------------------------------------------------------------- 5: U-Net init

def test_unet_without_batchnorm_starts_from_the_papers_init():
    torch.manual_seed(0)
    model = models.build_model("u_net", 2, batch_norm=False).eval()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            assert abs(module.weight.std().item() / (2 / fan_in) ** 0.5 - 1) < 0.15
            assert not module.bias.any()
    images = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        logits = model(images)["out"]
        assert 0.3 < logits.std().item() < 6
        # PyTorch's default init (a sixth of the variance per layer) shrinks the signal layer after
        # layer: its logits are over 30 times smaller here (measured: 0.11 against 4.9)
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.reset_parameters()
        assert model(images)["out"].std().item() * 30 < logits.std().item()


# ---------------------------------------------------------------- 6: DeepLab v3 multi-grid

@pytest.mark.parametrize("name", ["deeplab_v3", "deeplab_v3_plus"])
@pytest.mark.parametrize("output_stride, rates", [(16, (2, 4, 8)), (8, (4, 8, 16))])
def test_multi_grid_gives_block4_the_unit_rates_times_its_rate(name, output_stride, rates):
    model = models.build_model(name, 3, backbone="resnet50", output_stride=output_stride, multi_grid=(1, 2, 4))
    layer4 = model.backbone.layer4
    assert tuple(block.conv2.dilation[0] for block in layer4) == rates
    assert all(block.conv2.padding[0] == r for block, r in zip(layer4, rates))
    plain = models.build_model(name, 3, backbone="resnet50", output_stride=output_stride).backbone.layer4
    assert plain[0].conv2.dilation[0] == 32 // output_stride // 2  # torchvision's: the first block keeps the previous rate
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 33, 47))["out"].shape == (1, 3, 33, 47)


def test_multi_grid_rejects_bad_rates_and_the_voc_script_uses_it():
    with pytest.raises(ValueError, match="multi_grid"):
        models.build_model("deeplab_v3", 3, backbone="resnet18", multi_grid=(1, 0, 4))
    assert list(script_config("voc-deeplab-v3").model_kwargs["multi_grid"]) == [1, 2, 4]


# ---------------------------------------------------------------- 7: eval.py uses the run's precision

def test_eval_uses_the_checkpoints_amp_and_channels_last_unless_told_otherwise(tmp_path, monkeypatch, capsys):
    Trainer(_shapes_config(tmp_path, model="u_net", backbone=None, model_kwargs={"width": 4, "depth": 2},
                           amp=True, channels_last=True)).fit()
    best = tmp_path / "run" / "best.pth"
    seen = []
    real = predictor_module.evaluate

    def spy(*args, **kwargs):
        seen.append((kwargs["channels_last"], kwargs["autocast_dtype"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(predictor_module, "evaluate", spy)
    metrics = eval_script.main([str(best), "--device", "cpu", "--workers", "0"])
    assert seen[-1] == (True, torch.bfloat16)
    assert "amp bfloat16, channels_last" in capsys.readouterr().out
    assert metrics["mean_iu"] == load_checkpoint(best)["metrics"]["mean_iu"]
    eval_script.main([str(best), "--device", "cpu", "--workers", "0", "--no-amp", "--no-channels-last"])
    assert seen[-1] == (False, None)


# ---------------------------------------------------------------- 8-9: padding and test-time scaling

@pytest.mark.parametrize("norm, tolerance", [(IMAGENET, 0.01), (CAFFE_VGG, 0.5)])
def test_training_crops_are_padded_with_the_mean_as_the_sliding_window_is(norm, tolerance):
    image = tv_tensors.Image(torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(20, 30, dtype=torch.int64))
    crop, crop_mask = train_transforms((40, 50), (1.0, 1.0), hflip=False, norm=norm)(image, mask)
    padded = crop_mask == 255
    assert padded.sum() == 40 * 50 - 20 * 30
    # the padding normalises to zero (within the 8-bit rounding of the mean colour) ...
    assert crop[:, padded].abs().max() <= tolerance
    # ... which is what the sliding window pads the normalised tiles with
    tiles = []
    sliding_window(lambda t: tiles.append(t) or t[:, :1], torch.ones(1, 3, 20, 30), 1, (40, 50), (40, 50))
    assert (tiles[0][0, :, 20:, :] == 0).all() and (tiles[0][0, :, :, 30:] == 0).all()


def test_test_time_downscaling_is_antialiased_as_training_scaling_is():
    identity = lambda x: {"out": x}  # noqa: E731 - logits = the image, so the scaled input shows through
    torch.manual_seed(0)
    images = torch.rand(1, 3, 40, 60)
    out = predict_logits(identity, images, 3, InferenceConfig(scales=(0.5,)))
    small = TF.resize(images, [20, 30], antialias=True)  # what training's RandomScale does
    expected = F.interpolate(small, size=(40, 60), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected)
    aliased = F.interpolate(F.interpolate(images, scale_factor=0.5, mode="bilinear"), size=(40, 60), mode="bilinear")
    assert (out - aliased).abs().max() > 0.05


# ---------------------------------------------------------------- 10: CamVid crops fit the frames

def test_crop_size_takes_height_and_width():
    cfg = parse_config(TrainConfig(), ["--crop-size", "360", "480"])
    assert cfg.crop_size == (360, 480)
    assert parse_config(TrainConfig(), ["--crop-size", "64"]).crop_size == 64
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(), ["--crop-size", "1", "2", "3"])
    with pytest.raises(ValueError, match="crop-size"):
        TrainConfig(crop_size=(0, 4)).validate()
    image = tv_tensors.Image(torch.zeros(3, 400, 500, dtype=torch.uint8))
    crop, _ = train_transforms((360, 480), (1.0, 1.0))(image, tv_tensors.Mask(torch.zeros(400, 500)))
    assert crop.shape == (3, 360, 480)


@pytest.mark.parametrize("pair", ["camvid-seg-net", "camvid-u-net", "camvid-fcn8s-vgg", "camvid-fcn8s-densenet"])
def test_camvid_crops_fit_the_360_x_480_frames(pair):
    cfg = script_config(pair)
    height, width = (cfg.crop_size, cfg.crop_size) if isinstance(cfg.crop_size, int) else cfg.crop_size
    assert cfg.base_size == 0
    # never padded, at any random scale: padding would enter BatchNorm's statistics
    assert height <= 360 * cfg.scale_min and width <= 480 * cfg.scale_min
