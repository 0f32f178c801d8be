"""DRIVE through the `folder` data set: regions of interest (the field-of-view masks), the
retinal augmentations, and train/drive-u-net/train.py on a generated tree in the archive's
real layout (and on the real training half when ../shared/data/drive is present)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from datasets import build_dataset
from datasets.base import DatasetError
from tools.fake_data import make_drive
from tools.results_figure import TITLE_HEIGHT
from utils.recipes import DRIVE_TRAINING_DECLARATION
from utils.train_config import TrainConfig
from utils.transforms import RandomGamma, train_transforms

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "train" / "drive-u-net" / "train.py"
REAL_DRIVE = ROOT.parent / "shared" / "data" / "drive"


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    return make_drive(tmp_path_factory.mktemp("seg"))


def read_binary(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 0


def test_pixels_outside_the_region_are_ignored_and_inside_keep_their_class(drive):
    dataset = build_dataset("folder", "all", root=drive, **DRIVE_TRAINING_DECLARATION)
    assert len(dataset) == 20 and dataset.classes == ("background", "vessel")
    _, mask = dataset[0]
    fov = read_binary(drive / "training" / "mask" / "21_training_mask.gif")
    vessels = read_binary(drive / "training" / "1st_manual" / "21_manual1.gif")
    mask = mask.numpy()
    assert (mask[~fov] == 255).all() and (~fov).any()
    np.testing.assert_array_equal(mask[fov], vessels[fov].astype(np.int64))
    np.testing.assert_array_equal(dataset.read_mask(0).numpy(), mask)


def test_the_fixed_rule_holds_out_four_training_images(drive):
    val = build_dataset("folder", "val", root=drive, **DRIVE_TRAINING_DECLARATION)
    assert sorted(image.name for image, _ in val.samples) == [
        "24_training.tif", "25_training.tif", "35_training.tif", "38_training.tif"]


def test_a_missing_region_file_names_it(drive, tmp_path):
    import shutil
    copy = tmp_path / "drive"
    shutil.copytree(drive, copy)
    (copy / "training" / "mask" / "30_training_mask.gif").unlink()
    with pytest.raises(DatasetError, match="30_training_mask"):
        build_dataset("folder", "all", root=copy, **DRIVE_TRAINING_DECLARATION)


def test_region_declaration_errors(drive):
    with pytest.raises(DatasetError, match="missing region-of-interest folder .*nowhere"):
        build_dataset("folder", "all", root=drive, **{**DRIVE_TRAINING_DECLARATION, "roi": "nowhere"})
    keys = {k: v for k, v in DRIVE_TRAINING_DECLARATION.items() if k != "roi"}
    with pytest.raises(DatasetError, match="roi_name"):
        build_dataset("folder", "all", root=drive, **keys)
    with pytest.raises(DatasetError, match="roi_name"):
        build_dataset("folder", "all", root=drive, **{**DRIVE_TRAINING_DECLARATION, "roi_name": "no_id"})


def test_the_test_half_is_read_with_its_own_names(drive):
    test = {**DRIVE_TRAINING_DECLARATION, "images": "test/images", "image_name": "{id}_test",
            "masks": "test/1st_manual", "roi": "test/mask", "roi_name": "{id}_test_mask"}
    dataset = build_dataset("folder", "all", root=drive, **test)
    assert len(dataset) == 20 and dataset.samples[0][0].name == "01_test.tif"
    assert (dataset[0][1] == 255).any()


def test_random_gamma_stays_in_range_and_leaves_masks_alone():
    torch.manual_seed(0)
    image = tv_tensors.Image(torch.full((3, 4, 4), 64, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(4, 4, dtype=torch.int64))
    seen = set()
    for _ in range(50):
        out_image, out_mask = RandomGamma(0.5)(image, mask)
        assert torch.equal(out_mask, mask)
        seen.add(int(out_image[0, 0, 0]))
    # 64/255 raised to gamma in [1/1.5, 1.5]: from 255 * 0.251 ** 1.5 = 32 to 255 * 0.251 ** (1/1.5) = 101
    assert min(seen) >= 31 and max(seen) <= 102 and len(seen) > 10


def test_precrop_and_vertical_flips_keep_the_crop_size_and_the_labels_aligned():
    torch.manual_seed(0)
    ids = torch.arange(64 * 48).reshape(64, 48) % 2  # stripes: any misalignment changes a pixel
    image = tv_tensors.Image(torch.stack([ids * 200] * 3).to(torch.uint8))
    transform = train_transforms(16, (1.0, 1.0), hflip=True, vflip=True, precrop=24, brightness=0.0)
    for _ in range(10):
        out_image, out_mask = transform(image, tv_tensors.Mask(ids))
        assert out_image.shape == (3, 16, 16) and out_mask.shape == (16, 16)
        assert torch.equal(out_image[0] > out_image[0].mean(), out_mask.bool())


@pytest.mark.parametrize("flag,value", [("brightness", 1.0), ("contrast", -0.1), ("gamma", -1.0), ("precrop", -2)])
def test_bad_augmentation_values_name_the_flag(flag, value):
    with pytest.raises(ValueError, match=f"--{flag}"):
        TrainConfig(**{flag: value}).validate()


def run_script(data_root: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--data-root", str(data_root), "--run-dir", str(run_dir),
               "--iters", "4", "--val-every", "4", "--batch-size", "2", "--model-kwargs", '{"width": 4}',
               "--workers", "0", "--device", "cpu", "--no-progress", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_the_script_trains_and_validates_on_a_drive_like_tree(drive, tmp_path):
    result = run_script(drive, tmp_path / "run", "--crop-size", "32", "--precrop", "40")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "f1" in result.stdout and "roc_auc" in result.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["dataset_kwargs"]["roi"] == "training/mask"
    # The official test half, as the README scores it: its own folders, names and FOV masks.
    test_half = json.dumps({"images": "test/images", "image_name": "{id}_test", "masks": "test/1st_manual",
                            "roi": "test/mask", "roi_name": "{id}_test_mask"})
    out = tmp_path / "test.json"
    eval_command = [sys.executable, str(ROOT / "eval.py"), str(tmp_path / "run" / "last.pth"), "--split", "all",
                    "--data-root", str(drive), "--dataset-kwargs", test_half, "--workers", "0"]
    result = subprocess.run(eval_command + ["--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(out.read_text())
    fov_pixels = sum(int(read_binary(p).sum()) for p in (drive / "test" / "mask").glob("*.gif"))
    assert np.asarray(metrics["confusion"]).sum() == fov_pixels  # every pixel inside a FOV, none outside
    assert 0 <= metrics["f1"] <= 1 and 0 <= metrics["roc_auc"] <= 1
    # predict.py on the test images (TIFF): one class-id PNG per image, at the image's full size.
    command = [sys.executable, str(ROOT / "predict.py"), str(tmp_path / "run" / "last.pth"),
               str(drive / "test" / "images"), "--out", str(tmp_path / "pred"), "--probs", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for image_path in sorted((drive / "test" / "images").glob("*.tif")):
        prediction = np.asarray(Image.open(tmp_path / "pred" / f"{image_path.stem}.png"))
        assert prediction.shape == Image.open(image_path).size[::-1] and set(np.unique(prediction)) <= {0, 1}
        probabilities = np.load(tmp_path / "pred" / f"{image_path.stem}.npy")
        assert np.array_equal(probabilities.argmax(0), prediction)
    # Another decision threshold: the PNGs follow class 1's saved probability, eval.py's counts change.
    result = subprocess.run(command + ["--threshold", "0.3", "--out", str(tmp_path / "pred-0.3")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for image_path in sorted((drive / "test" / "images").glob("*.tif")):
        prediction = np.asarray(Image.open(tmp_path / "pred-0.3" / f"{image_path.stem}.png"))
        probabilities = np.load(tmp_path / "pred-0.3" / f"{image_path.stem}.npy")
        assert np.array_equal(prediction, probabilities[1] > 0.3)
    result = subprocess.run(eval_command + ["--threshold", "0.3", "--json", str(tmp_path / "test-0.3.json")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lower = json.loads((tmp_path / "test-0.3.json").read_text())
    assert lower["threshold"] == 0.3 and np.asarray(lower["confusion"]).sum() == fov_pixels
    assert np.asarray(lower["confusion"])[:, 1].sum() >= np.asarray(metrics["confusion"])[:, 1].sum()
    assert lower["roc_auc"] == metrics["roc_auc"]  # the areas do not depend on the threshold
    # The results picture leaves what is not scored (outside the FOV) white in the prediction too.
    figure = tmp_path / "figure.png"
    command = [sys.executable, str(ROOT / "tools" / "results_figure.py"), str(tmp_path / "run" / "last.pth"),
               "--indices", "0", "--out", str(figure), "--device", "cpu", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    mask = build_dataset("folder", "val", root=drive, **DRIVE_TRAINING_DECLARATION)[0][1].numpy()
    height, width = mask.shape
    picture = np.asarray(Image.open(figure).convert("RGB"))
    prediction = picture[TITLE_HEIGHT:TITLE_HEIGHT + height, 2 * (width + 4):2 * (width + 4) + width]
    outside = mask == 255
    assert outside.any() and (prediction[outside] == 255).all() and not (prediction[~outside] == 255).all()


@pytest.mark.skipif(not REAL_DRIVE.is_dir(), reason="the DRIVE training half is not in ../shared/data/drive")
def test_the_script_on_the_real_training_half(tmp_path):
    dataset = build_dataset("folder", "val", root=REAL_DRIVE, **DRIVE_TRAINING_DECLARATION)
    image_path, _ = dataset.samples[0]
    fov = read_binary(REAL_DRIVE / "training" / "mask" / image_path.name.replace(".tif", "_mask.gif"))
    mask = dataset[0][1].numpy()
    assert (mask[~fov] == 255).all() and set(np.unique(mask[fov])) == {0, 1}
    result = run_script(REAL_DRIVE, tmp_path / "run", "--crop-size", "64", "--precrop", "96",
                        "--json-metrics-check")
    assert result.returncode != 0 and "--json-metrics-check" in result.stderr  # bad flags fail first
    result = run_script(REAL_DRIVE, tmp_path / "run", "--crop-size", "64", "--precrop", "96")
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(l for l in result.stdout.splitlines() if "f1" in l)
    figures = dict(zip(line.split()[2::2], map(float, line.split()[3::2])))
    assert all(np.isfinite(v) and 0 <= v <= 1 for v in figures.values()) and "roc_auc" in figures
