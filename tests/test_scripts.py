"""Every training script under train/ runs as a command on a fake copy of its data set.

Each script runs two iterations as a subprocess (`python train/<pair>/train.py ...`),
at a tiny size and width, on a tree written by tools/fake_data.py in the data set's
real layout, and must write last.pth, best.pth and TensorBoard events. A subset of
the checkpoints then goes through eval.py and predict.py. The FCN scripts run in
the paper's stages: FCN-16s from FCN-32s's checkpoint, FCN-8s from FCN-16s's.
"""
import inspect
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
import eval as eval_script
import models
import predict as predict_script
from tools.fake_data import make
from utils.checkpoint import load_checkpoint
from utils.engine import TrainConfig, Trainer
from utils.transforms import train_transforms

ROOT = Path(__file__).resolve().parents[1]

# The mission's (data set, model) pairs (shapes-u-net is tested in test_engine.py).
REQUIRED = ["voc-fcn8s-vgg", "voc-fcn16s-vgg", "voc-fcn32s-vgg", "voc-psp-net", "voc-gcn",
            "cityscapes-fcn8s-resnet", "cityscapes-psp-net", "cityscapes-gcn", "cityscapes-duc-hdc",
            "ade20k-psp-net", "camvid-seg-net", "camvid-fcn8s-densenet", "voc-deeplab-v3",
            "cityscapes-deeplab-v3-plus", "voc-refine-net", "ade20k-deeplab-v3"]

SLIDE = ["--val-tile", "64", "--val-stride", "32"]  # two tiles across the 32 x 96 fake images
# The PSPNet scripts train the authors' network (deep-base ResNet-50/101): here its options on
# resnet18, validated with their protocol at a crop and long side that fit the fake images.
PSP = ["--backbone", "resnet18", "--model-kwargs", '{"width": 16, "dilate_first_block": true, '
       '"bin_batch_norm": true, "align_corners": true}', "--val-tile", "64", "--val-long-side", "64"]
# Per script: the smallest model that keeps its architecture (backbones cannot shrink
# below resnet18 / vgg16 / densenet121, heads can), plus a tile that fits the fake images.
TINY = {
    "voc-fcn32s-vgg": ["--model-kwargs", '{"fc_channels": 16}'],
    "voc-fcn16s-vgg": ["--model-kwargs", '{"fc_channels": 16}'],
    "voc-fcn8s-vgg": ["--model-kwargs", '{"fc_channels": 16}'],
    "voc-psp-net": PSP,
    "voc-gcn": ["--backbone", "resnet18", "--model-kwargs", '{"kernel_size": 3}'],
    "cityscapes-fcn8s-resnet": ["--backbone", "resnet18", *SLIDE],
    "cityscapes-psp-net": [*PSP, "--val-long-side", "96"],
    "cityscapes-gcn": ["--backbone", "resnet18", "--model-kwargs", '{"kernel_size": 3}', *SLIDE],
    "cityscapes-duc-hdc": ["--backbone", "resnet18", *SLIDE],
    "ade20k-psp-net": PSP,
    "camvid-seg-net": [],
    "camvid-fcn8s-densenet": [],
    "voc-deeplab-v3": ["--backbone", "resnet18", "--model-kwargs", '{"channels": 16}'],
    "cityscapes-deeplab-v3-plus": ["--backbone", "resnet18", "--model-kwargs", '{"channels": 16}', *SLIDE],
    "voc-refine-net": ["--backbone", "resnet18", "--model-kwargs", '{"features": 8}'],
    # val_base_size 40 > the 32-pixel fake images: validation resizes, metrics at the labels' size
    "ade20k-deeplab-v3": ["--backbone", "resnet18", "--model-kwargs",
                          '{"channels": 16, "output_stride": 8, "aux": true}', "--val-base-size", "40"],
}
STAGED_FROM = {"voc-fcn16s-vgg": "voc-fcn32s-vgg", "voc-fcn8s-vgg": "voc-fcn16s-vgg"}


def script_path(pair: str) -> Path:
    return ROOT / "train" / pair / "train.py"


def script_config(pair: str) -> TrainConfig:
    """The script's TrainConfig, read without running it (its __name__ is not '__main__')."""
    return runpy.run_path(str(script_path(pair)), run_name="script_under_test")["cfg"]


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory) -> dict:
    """Fake trees, images smaller than the 64-pixel training crop (so crops are padded)."""
    base = tmp_path_factory.mktemp("seg_data")
    return {
        "voc_aug": make("voc_aug", base, size=(40, 48), n=2),
        "cityscapes": make("cityscapes", base, size=(32, 96), n=2, coarse=False),
        "ade20k": make("ade20k", base, size=32, n=2),
        "camvid": make("camvid", base, size=(24, 32), n=2),
    }


@pytest.fixture(scope="module")
def trained(seg_data, tmp_path_factory):
    """train(pair) runs the script once per module and returns (run folder, stdout)."""
    runs = tmp_path_factory.mktemp("runs")
    done: dict = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEG_RUNS": str(runs / "default")}

    def train(pair: str):
        if pair in done:
            return done[pair]
        cfg = script_config(pair)
        run_dir = runs / pair
        argv = [sys.executable, str(script_path(pair)), "--iters", "2", "--batch-size", "2", "--crop-size", "64",
                "--val-every", "2", "--no-pretrained", "--workers", "0", "--device", "cpu", "--no-progress",
                "--data-root", str(seg_data[cfg.dataset]), "--run-dir", str(run_dir), *TINY[pair]]
        if pair in STAGED_FROM:
            argv += ["--init-from", str(train(STAGED_FROM[pair])[0] / "best.pth")]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
        assert result.returncode == 0, f"{pair} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        done[pair] = (run_dir, result.stdout)
        return done[pair]

    return train


def test_every_pair_has_a_thin_script_with_its_paper_setting():
    present = {p.parent.name for p in (ROOT / "train").glob("*/train.py")}
    assert set(REQUIRED) <= present
    for pair in REQUIRED:
        text = script_path(pair).read_text()
        doc = text.split('"""')[1]
        assert "Reported" in doc and re.search(r"\b(19|20)\d\d\b", doc), f"{pair}: docstring names no source"
        assert "from utils.engine import run" in text and "run(cfg)" in text
        assert "cfg = recipe.config()" in text, f"{pair}: builds its config from the bases of utils/recipes.py"
        assert len(text.splitlines()) < 90, f"{pair} is not a thin script"
        cfg = script_config(pair)
        cfg.validate()
        dataset, model = pair.split("-", 1)
        assert cfg.dataset.startswith(dataset)
        assert cfg.model in models.list_models() and cfg.dataset in datasets.list_datasets()
        assert cfg.pretrained, f"{pair}: the papers start from ImageNet weights"
        # every model option the script sets is one its builder takes
        inspect.signature(models.MODELS[cfg.model]).bind(21, backbone=cfg.backbone, pretrained=False,
                                                         **cfg.model_kwargs)
        if cfg.val_mode == "slide":
            assert cfg.val_stride <= cfg.val_tile
        if cfg.dataset == "voc_aug":
            assert cfg.train_split == "train_aug" and cfg.val_split == "val"


@pytest.mark.parametrize("pair", REQUIRED)
def test_training_script_runs_two_iterations(pair, trained):
    run_dir, stdout = trained(pair)
    assert stdout.strip().splitlines()[-1].startswith("best mean_iu ")
    state = load_checkpoint(run_dir / "last.pth")
    cfg = script_config(pair)
    assert state["iteration"] == 2 and state["model"] == cfg.model and state["dataset"] == cfg.dataset
    assert state["config"]["pretrained"] is False and state["config"]["crop_size"] == 64
    assert (run_dir / "best.pth").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    if pair in STAGED_FROM:
        assert re.search(r"initialised \d+/\d+ tensors from .*best\.pth", stdout)


def test_fcn_stages_copy_every_tensor_of_the_coarser_net(trained, seg_data, tmp_path):
    source = load_checkpoint(trained("voc-fcn32s-vgg")[0] / "best.pth")["state_dict"]
    for model, new in (("fcn16s", {"skip_scores.0", "upsamples.0"}),
                       ("fcn8s", {"skip_scores.0", "skip_scores.1", "upsamples.0", "upsamples.1"})):
        cfg = TrainConfig(model=model, model_kwargs={"fc_channels": 16}, dataset="voc_aug",
                          data_root=str(seg_data["voc_aug"]), train_split="train_aug", batch_size=2,
                          crop_size=64, workers=0, device="cpu", progress=False, run_dir=str(tmp_path / model),
                          init_from=str(trained("voc-fcn32s-vgg")[0] / "best.pth"))
        own = Trainer(cfg).model.state_dict()
        assert set(source) <= set(own)
        for key, value in source.items():
            assert torch.equal(own[key], value), key
        assert {k.rsplit(".", 1)[0] for k in set(own) - set(source)} == new
        # the new skip scores start at zero, so the finer net starts from the coarser one's scores
        assert all(not own[k].any() for k in own if k.startswith("skip_scores"))


def test_training_crops_of_small_images_are_padded_to_the_configured_size(seg_data):
    data = datasets.build_dataset("voc_aug", "train_aug", seg_data["voc_aug"], train_transforms(64, (0.5, 1.0)))
    for index in range(len(data)):
        image, mask = data[index]
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
        assert (mask == 255).float().mean() > 0.4  # a 48 x 40 image at most: the rest is ignored padding


@pytest.mark.parametrize("pair,extra", [
    ("cityscapes-psp-net", ["--mode", "slide", "--tile", "64", "--stride", "16", "--tile-batch", "3"]),
    ("ade20k-deeplab-v3", ["--scales", "0.75", "1.25", "--flip"]),
    ("camvid-seg-net", []),
])
def test_eval_and_predict_run_on_the_script_checkpoints(pair, extra, trained, seg_data, tmp_path, capsys):
    run_dir, _ = trained(pair)
    best = load_checkpoint(run_dir / "best.pth")
    cfg = script_config(pair)
    common = ["--device", "cpu", "--workers", "0"]
    metrics = eval_script.main([str(run_dir / "best.pth"), *common, "--json", str(tmp_path / "m.json")])
    assert metrics["mean_iu"] == best["metrics"]["mean_iu"]  # the engine's validation, reproduced
    out = capsys.readouterr().out
    assert best["classes"][0] in out and "mean_iu" in out
    eval_script.main([str(run_dir / "best.pth"), *common, *extra, "--save-dir", str(tmp_path / "preds")])
    val = datasets.build_dataset(cfg.dataset, cfg.val_split, seg_data[cfg.dataset])
    for index in range(len(val)):
        image, _ = val.load(index)
        saved = Image.open(tmp_path / "preds" / f"{val.sample_name(index)}.png")
        assert saved.mode == "P" and saved.size == (image.shape[2], image.shape[1])
        assert (tmp_path / "preds" / f"{val.sample_name(index)}_overlay.png").is_file()
    assert json.loads((tmp_path / "m.json").read_text())["mean_iu"] == metrics["mean_iu"]

    images = sorted(p for p, _ in val.samples)
    written = predict_script.main([str(run_dir / "best.pth"), str(images[0]), "--out", str(tmp_path / "out"),
                                   "--device", "cpu", *extra])
    assert len(written) == 1
    prediction = np.asarray(Image.open(written[0]))
    width, height = Image.open(images[0]).size
    assert prediction.shape == (height, width)  # the image's own size, whatever the model saw
    assert prediction.max() < best["num_classes"]
