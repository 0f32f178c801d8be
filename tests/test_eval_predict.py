"""eval.py and predict.py: original-resolution metrics, unlabelled splits, files and folders, flags."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import datasets
import eval as eval_script
import predict as predict_script
from tools.fake_data import make
from utils.checkpoint import load_checkpoint
from utils.data import eval_loader
from utils.engine import TrainConfig, Trainer
from utils.inference import evaluate
from utils.inference import InferenceConfig, predict_logits
from utils.transforms import eval_transforms

ROOT = Path(__file__).resolve().parents[1]
SIZE = (32, 96)  # height, width of the fake Cityscapes images


@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory) -> Path:
    return make("cityscapes", tmp_path_factory.mktemp("data"), size=SIZE, n=2, coarse=False)


@pytest.fixture(scope="module")
def checkpoint(cityscapes, tmp_path_factory) -> Path:
    """A tiny U-Net validated with the shorter side resized to 24 (val_base_size)."""
    run_dir = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model="u_net", model_kwargs={"width": 4, "depth": 2}, dataset="cityscapes",
                      data_root=str(cityscapes), iters=2, batch_size=2, crop_size=32, val_every=2,
                      val_base_size=24, val_batch_size=2, workers=0, device="cpu", progress=False,
                      run_dir=str(run_dir))
    Trainer(cfg).fit()
    return run_dir / "best.pth"


def test_a_validation_base_size_scores_logits_resized_back_to_the_original_labels(cityscapes, checkpoint):
    val = datasets.build_dataset("cityscapes", "val", cityscapes, eval_transforms(24))
    image, mask = val[0]
    assert image.shape[-2:] == (24, 72) and mask.shape == SIZE  # the model sees 24 x 72; labels stay
    state = load_checkpoint(checkpoint)
    from utils.checkpoint import model_from_checkpoint
    shapes = []
    metrics = evaluate(model_from_checkpoint(state), eval_loader(val, 2, 0, False), 19, torch.device("cpu"),
                       on_batch=lambda i, images, targets, preds, logits: shapes.append(
                           (images.shape, preds.shape, logits.shape)))
    assert shapes == [((2, 3, *SIZE), (2, *SIZE), (2, 19, *SIZE))]
    assert metrics["mean_iu"] == state["metrics"]["mean_iu"]
    # eval.py reproduces it, and an explicit --base-size 0 scores the unresized images instead
    assert eval_script.main([str(checkpoint), "--device", "cpu", "--workers", "0"])["mean_iu"] == \
        state["metrics"]["mean_iu"]
    eval_script.main([str(checkpoint), "--device", "cpu", "--workers", "0", "--base-size", "0"])


def test_eval_on_an_unlabelled_split_points_to_predict(checkpoint):
    with pytest.raises(SystemExit, match=r"no labels.*predict\.py .*leftImg8bit/test"):
        eval_script.main([str(checkpoint), "--split", "test", "--device", "cpu", "--workers", "0"])


def test_images_of_different_sizes_in_one_batch_are_a_clear_error(tmp_path):
    root = make("voc", tmp_path, size=24, n=2)
    val = datasets.build_dataset("voc", "val", root, eval_transforms())
    original = val.load

    def load(index):
        image, mask = original(index)
        return (image[..., :20], mask[..., :20]) if index == 1 else (image, mask)

    val.load = load
    with pytest.raises(ValueError, match="--batch-size 1"):
        next(iter(eval_loader(val, 2, 0, False)))


def test_predict_segments_folders_recursively_at_each_images_own_size(cityscapes, checkpoint, tmp_path):
    test_folder = cityscapes / "leftImg8bit" / "test"
    written = predict_script.main([str(checkpoint), str(test_folder), "--out", str(tmp_path / "out"),
                                   "--device", "cpu", "--mode", "slide", "--tile", "32", "--stride", "16",
                                   "--scales", "0.75", "1.0", "--flip"])
    images = sorted(test_folder.rglob("*.png"))
    assert len(written) == len(images) == 2
    for image_path in images:
        target = tmp_path / "out" / image_path.parent.name / f"{image_path.stem}.png"
        assert target in written
        saved = Image.open(target)
        assert saved.mode == "P" and saved.size == Image.open(image_path).size
        assert np.asarray(saved).max() < 19
        assert target.with_name(f"{image_path.stem}_overlay.png").is_file()
    # a single file is written under its own stem
    single = predict_script.main([str(checkpoint), str(images[0]), "--out", str(tmp_path / "one"),
                                  "--device", "cpu", "--no-overlay"])
    assert single == [tmp_path / "one" / f"{images[0].stem}.png"]


@pytest.mark.parametrize("argv,message", [
    (["--tile", "0"], "--tile must be >= 1"),
    (["--scales", "0"], "--scales must be positive"),
    (["--mode", "tiles"], "invalid choice"),
])
def test_predict_rejects_bad_flags(checkpoint, tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit):
        predict_script.main([str(checkpoint), str(tmp_path), "--out", str(tmp_path / "o"), *argv])
    assert message in capsys.readouterr().err


def test_predict_reports_missing_inputs(checkpoint, tmp_path):
    with pytest.raises(SystemExit, match="neither an image file nor a folder"):
        predict_script.main([str(checkpoint), str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no images"):
        predict_script.main([str(checkpoint), str(tmp_path / "empty"), "--out", str(tmp_path / "o")])


class Pointwise(nn.Module):
    """A 1x1 convolution: equivariant to flips and translations."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_multi_scale_plus_flip_equals_multi_scale_for_a_flip_equivariant_model(mode):
    model = Pointwise().eval()
    images = torch.randn(2, 3, 29, 41)
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    plain = predict_logits(model, images, 5, InferenceConfig(mode=mode, tile=16, stride=11, scales=scales))
    flipped = predict_logits(model, images, 5, InferenceConfig(mode=mode, tile=16, stride=11, scales=scales,
                                                                flip=True))
    assert plain.shape == (2, 5, 29, 41)
    assert torch.allclose(plain, flipped, atol=1e-5)
    assert torch.equal(plain.argmax(1), flipped.argmax(1))


def test_eval_and_predict_run_as_commands(checkpoint, cityscapes, tmp_path):
    common = {"capture_output": True, "text": True, "timeout": 300, "cwd": ROOT}
    result = subprocess.run([sys.executable, "eval.py", str(checkpoint), "--device", "cpu", "--workers", "0",
                             "--scales", "1.0", "1.5", "--flip"], **common)
    assert result.returncode == 0, result.stderr
    assert "mean_iu" in result.stdout and "sidewalk" in result.stdout
    image = next((cityscapes / "leftImg8bit" / "val").rglob("*.png"))
    result = subprocess.run([sys.executable, "predict.py", str(checkpoint), str(image), "--out",
                             str(tmp_path / "p"), "--device", "cpu"], **common)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p" / f"{image.stem}.png").is_file()
