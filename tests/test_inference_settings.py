"""One vocabulary of inference settings: training's --val-<name>, eval.py's and predict.py's --<name>,
and `Predictor.from_checkpoint`, which applies the checkpoint's settings with the overrides."""
import dataclasses
import typing

import pytest
import torch

import eval as eval_script
import models
import predict as predict_script
from datasets.shapes import Shapes
from models.input_norm import input_norm_of
from utils.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from utils.cli import parse_config
from utils.engine import TrainConfig
from utils.inference import predict_logits
from utils.inference_settings import InferenceConfig
from utils.predictor import Predictor
from utils.transforms import eval_transforms

SETTINGS = dataclasses.fields(InferenceConfig)


def test_every_setting_is_a_training_field_with_the_same_default_help_and_type():
    train_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    train_hints, hints = typing.get_type_hints(TrainConfig), typing.get_type_hints(InferenceConfig)
    for setting in SETTINGS:
        name = setting.name if setting.metadata.get("shared") else f"val_{setting.name}"
        assert name in train_fields, f"TrainConfig lacks {name}"
        assert train_hints[name] == hints[setting.name]
        if not setting.metadata.get("shared"):  # amp and channels_last are the run's own, with its own help
            assert train_fields[name].default == setting.default
            assert train_fields[name].metadata == setting.metadata
    # and every validation field of the training config is a setting
    names = {s.name for s in SETTINGS}
    assert {f[4:] for f in train_fields if f.startswith("val_")} - names == {"split", "every", "images"}


def test_eval_and_predict_take_each_setting_as_the_training_flag_without_val():
    argv = ["--mode", "slide", "--tile", "40", "--stride", "20", "--tile-batch", "2", "--base-size", "36",
            "--scales", "0.5", "1.0", "--flip", "--mirror-margin", "3", "--long-side", "0", "--protocol", "default",
            "--no-amp", "--channels-last"]
    expected = {"mode": "slide", "tile": 40, "stride": 20, "tile_batch": 2, "base_size": 36, "scales": (0.5, 1.0),
                "flip": True, "mirror_margin": 3, "long_side": 0, "protocol": "default", "amp": False,
                "channels_last": True}
    from utils.cli import inference_overrides
    assert inference_overrides(eval_script.parse_args(["x.pth", *argv, "--batch-size", "3"])) == \
        {**expected, "batch_size": 3}
    assert inference_overrides(predict_script.parse_args(["x.pth", "in.png", "--out", "o", *argv])) == expected
    # the same words, prefixed with val-, set the training run's validation
    train_argv = ["--val-mode", "slide", "--val-tile", "40", "--val-stride", "20", "--val-tile-batch", "2",
                  "--val-base-size", "36", "--val-scales", "0.5", "1.0", "--val-flip", "--val-mirror-margin", "3",
                  "--val-long-side", "0", "--val-protocol", "default", "--no-amp", "--channels-last"]
    cfg = parse_config(TrainConfig(crop_size=32), train_argv)
    assert dataclasses.asdict(cfg.inference()) == {**dataclasses.asdict(InferenceConfig()), **expected}
    # nothing given: nothing overridden (the checkpoint's settings stand)
    assert inference_overrides(eval_script.parse_args(["x.pth"])) == {}


@pytest.mark.parametrize("argv,message", [
    (["--val-protocol", "semseg", "--val-base-size", "512"], "--val-base-size 512 resizes the shorter side, but "
                                                             "--val-protocol semseg resizes the longer side"),
    (["--val-scales", "1.0", "0"], "--val-scales must be positive"),
    (["--val-mode", "slide", "--val-tile", "300", "--val-stride", "400"], "--val-stride 400 exceeds --val-tile 300"),
    (["--val-tile-batch", "0"], "--val-tile-batch must be >= 1"),
])
def test_training_refuses_bad_validation_settings_by_their_flags(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_config(TrainConfig(crop_size=32), argv)
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of an untrained small U-Net on 32-pixel shapes, validated with --val-flip at base size 40."""
    torch.manual_seed(0)
    model = models.build_model("u_net", 4, width=4, depth=2)
    cfg = TrainConfig(model="u_net", model_kwargs={"width": 4, "depth": 2}, dataset="shapes",
                      dataset_kwargs={"size": 32, "length": 4}, crop_size=32, val_flip=True, val_base_size=40,
                      val_batch_size=2)
    path = tmp_path_factory.mktemp("ckpt") / "best.pth"
    save_checkpoint(make_checkpoint(model="u_net", model_kwargs={"width": 4, "depth": 2}, num_classes=4,
                                    input_norm=input_norm_of(model).to_dict(), dataset="shapes",
                                    dataset_kwargs={"size": 32, "length": 4}, classes=list(Shapes.classes),
                                    palette=list(Shapes.palette), state_dict=model.state_dict(),
                                    config=dataclasses.asdict(cfg)), path)
    return path


def test_the_predictor_applies_the_checkpoints_settings_unless_overridden(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    assert (predictor.settings.flip, predictor.settings.base_size, predictor.settings.batch_size) == (True, 40, 2)
    assert Predictor.from_checkpoint(checkpoint, "cpu", flip=False).settings.flip is False
    # segment(): resized to the base size for the model, logits back at the image's own size, with the flip
    image = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8)
    logits = predictor.segment(image)
    resized = eval_transforms(40, predictor.input_norm)(image)[None].as_subclass(torch.Tensor)
    assert resized.shape[-2:] == (40, 60)
    expected = predict_logits(predictor.model, resized, 4, predictor.settings, size=(32, 48))
    assert logits.shape == (1, 4, 32, 48)
    torch.testing.assert_close(logits, expected)
    # the evaluation loop runs as the run's validation did: its batch size, its settings
    dataset = predictor.dataset()
    metrics = predictor.evaluate(predictor.loader(dataset), dataset.ignore_index)
    assert 0 <= metrics["mean_iu"] <= 1


def test_a_checkpoint_from_before_the_three_new_settings_validates_as_it_ran(checkpoint, tmp_path):
    state = load_checkpoint(checkpoint)
    old = {**state, "version": 2, "config": {k: v for k, v in state["config"].items()
                                             if k not in ("val_tile_batch", "val_scales", "val_flip")}}
    torch.save(old, tmp_path / "v2.pth")
    settings = Predictor.from_checkpoint(tmp_path / "v2.pth", "cpu").settings
    assert (settings.tile_batch, settings.scales, settings.flip) == (4, (1.0,), False)
    with pytest.raises(ValueError, match="lacks the inference settings val_tile_batch, val_scales, val_flip"):
        InferenceConfig.from_train_config(old["config"])


def test_base_size_and_the_semseg_protocol_are_refused_together(checkpoint, tmp_path):
    with pytest.raises(SystemExit, match="--base-size 40 resizes the shorter side, but --protocol semseg"):
        eval_script.main([str(checkpoint), "--protocol", "semseg", "--device", "cpu", "--workers", "0"])
    with pytest.raises(ValueError, match="give --base-size 0"):
        Predictor.from_checkpoint(checkpoint, "cpu", protocol="semseg")
    # with the checkpoint's base size turned off, the protocol runs
    metrics = eval_script.main([str(checkpoint), "--protocol", "semseg", "--base-size", "0", "--tile", "32",
                                "--device", "cpu", "--workers", "0"])
    assert 0 <= metrics["mean_iu"] <= 1
