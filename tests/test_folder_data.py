"""Your own data as it really comes: mask formats, declarations, never-silent errors,
size mismatches, the data-set report (tools/inspect_data.py) and Dice in eval.py.

Every tree is generated here, tiny, in the layouts public data sets ship in.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_script
from datasets import DatasetError, build_dataset
from datasets.folder.mask_files import read_mask_file
from tools.fake_data import make_own_folder
from tools import inspect_data
from utils.engine import TrainConfig, Trainer
from utils.metrics import ConfusionMatrix

BINARY = {"classes": {"background": 0, "foreground": 255}}
COLOURS = [(0, 0, 0), (128, 64, 128), (0, 128, 192)]


def mask_of(root: Path, stem: str, suffix: str = ".png", folder: str = "masks") -> np.ndarray:
    return np.asarray(Image.open(root / folder / f"{stem}{suffix}"))


# ---------------------------------------------------------------- never silent

def test_0_255_masks_without_a_declaration_stop_with_both_readings(tmp_path):
    root = make_own_folder(tmp_path)
    (root / "classes.txt").write_text("background\nforeground\n")  # names alone do not say what 255 is
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", "train", root=root)
    text = str(err.value)
    assert "only the values 0 and 255" in text
    assert '{"classes": {"background": 0, "foreground": 255}}' in text  # reading (a), exactly
    assert '{"classes": {"background": 0}, "ignore": [255]}' in text    # reading (b), exactly
    assert str(root / "dataset.json") in text and "--dataset-kwargs" in text


def test_two_grey_values_without_a_declaration_stop(tmp_path):
    root = make_own_folder(tmp_path, values=(0, 128))
    with pytest.raises(DatasetError, match=r"only the values 0 and 128: read as class ids, that would make "
                                           r"129 classes of which 127 never occur") as err:
        build_dataset("folder", "all", root=root)
    assert '{"classes": {"background": 0, "foreground": 128}}' in str(err.value)
    # grey levels with an outline value: 0/128/255 would be 129 classes, 127 of them empty
    root = make_own_folder(tmp_path / "three", values=(0, 128, 255))
    with pytest.raises(DatasetError, match=r"values 0, 128, 255: read as class ids, that would make 129 "
                                           r"classes of which 127 never occur") as err:
        build_dataset("folder", "all", root=root)
    assert '{"classes": {"class_0": 0, "class_128": 128, "class_255": 255}}' in str(err.value)
    # 0/1 masks are two class ids: they load as before, with no declaration
    root = make_own_folder(tmp_path / "ids", values=(0, 1))
    assert build_dataset("folder", "all", root=root).classes == ("class_0", "class_1")


def test_an_undeclared_value_names_the_file_value_and_count(tmp_path):
    root = make_own_folder(tmp_path)
    mask = mask_of(root, "case_01").copy()
    mask[:2, :3] = 128  # 6 pixels of a value the declaration does not list
    Image.fromarray(mask).save(root / "masks" / "case_01.png")
    ds = build_dataset("folder", "all", root=root, **BINARY)
    with pytest.raises(DatasetError, match=r"case_01\.png holds value 128 in 6 pixels, which the declaration"):
        ds.verify()


# ---------------------------------------------------------------- declarations

def test_declared_binary_masks_become_classes_0_and_1(tmp_path):
    root = make_own_folder(tmp_path)
    raw = mask_of(root, "case_00")
    ds = build_dataset("folder", "all", root=root, **BINARY)
    assert ds.classes == ("background", "foreground") and ds.num_classes == 2
    image, mask = ds[0]
    assert torch.equal(mask, torch.from_numpy((raw == 255).astype(np.int64)))
    assert image.shape == (3, 24, 32) and image.dtype == torch.uint8


def test_the_declaration_file_and_options_merge(tmp_path):
    root = make_own_folder(tmp_path, values=(0, 255, 100), mask_name="{id}_mask")
    (root / "dataset.json").write_text(json.dumps(
        {"classes": {"background": 0, "vessel": 255}, "ignore": [100], "mask_name": "{id}_mask"}))
    raw = mask_of(root, "case_00_mask")
    ds = build_dataset("folder", "all", root=root)
    mask = ds[0][1].numpy()
    assert (mask[raw == 100] == 255).all() and (mask[raw == 255] == 1).all() and (mask[raw == 0] == 0).all()
    # an option replaces the file's key of the same name
    ds = build_dataset("folder", "all", root=root, classes={"background": 0, "vessel": 255, "other": 100}, ignore=[])
    assert ds.num_classes == 3 and set(np.unique(ds[0][1].numpy())) == {0, 1, 2}


def test_a_list_of_names_declares_class_id_masks(tmp_path):
    root = make_own_folder(tmp_path, values=(0, 1, 2))
    ds = build_dataset("folder", "all", root=root, classes=["sky", "road", "car"])
    assert ds.classes == ("sky", "road", "car")
    assert torch.equal(ds[0][1], torch.from_numpy(mask_of(root, "case_00").astype(np.int64)))


@pytest.mark.parametrize("options,message", [
    ({"classes": {"a": 0}, "colour": 1}, r"unknown key 'colour' in .*valid keys: classes, ignore"),
    ({"classes": {"a": 0, "b": 0}}, r"one value per class, but 0 is given to 'a' and 'b'"),
    ({"classes": {"a": 0, "b": [1, 2, 3]}}, r"class 'b' has \[1, 2, 3\]"),
    ({"classes": {"a": 0}, "ignore": [0]}, r"0 is the value of class 'a'"),
    ({"classes": {"a": 0}, "mask_name": "mask"}, r"'mask_name' .* is 'mask'; expected .*\{id\}"),
    ({"ignore": [255]}, r"no ignore list without 'classes'"),
    ({"classes": {"a": 0}, "max_far_fraction": 2}, r"'max_far_fraction' .* between 0 and 1"),
])
def test_a_bad_declaration_names_the_key_and_what_was_expected(tmp_path, options, message):
    root = make_own_folder(tmp_path, n=2)
    with pytest.raises(DatasetError, match=message) as err:
        build_dataset("folder", "all", root=root, **options)
    assert "--dataset-kwargs" in str(err.value)
    (root / "dataset.json").write_text("{\"classes\": ")
    with pytest.raises(DatasetError, match=r"dataset\.json is not valid JSON \(line 1"):
        build_dataset("folder", "all", root=root)


# ---------------------------------------------------------------- mask formats

def test_jpeg_masks_are_snapped_to_the_declared_values(tmp_path):
    clean = make_own_folder(tmp_path / "png", n=4)
    root = make_own_folder(tmp_path / "jpg", n=4, mask_ext=".jpg", quality=50)
    noisy = mask_of(root, "case_00", ".jpg")
    assert len(np.unique(noisy)) > 10  # real compression noise, not just 0 and 255
    ds = build_dataset("folder", "all", root=root, **BINARY)
    truth = build_dataset("folder", "all", root=clean, **BINARY)
    for index in range(len(ds)):
        agree = (ds[index][1] == truth[index][1]).float().mean().item()
        assert agree > 0.98  # snapping recovers the labels up to a few edge pixels
    ds.verify()
    # declaring values the file does not hold (0/128 for 0/255 masks) fails on the far pixels, when built
    with pytest.raises(DatasetError, match=r"case_00\.jpg is lossy \(JPEG\) and \d+ of its 768 pixels "
                                           r"\(\d+\.\d %\) are more than 48 levels from every declared value"):
        build_dataset("folder", "all", root=root, classes={"background": 0, "foreground": 128})
    # without a declaration a JPEG mask stops the build, with the values to declare
    with pytest.raises(DatasetError, match=r"is stored lossily \(JPEG; 4 such masks\).*\n.*\"background\": 0, \"foreground\": 255"):
        build_dataset("folder", "all", root=root)


def test_far_pixels_up_to_the_threshold_are_counted(tmp_path):
    root = make_own_folder(tmp_path, n=2, mask_ext=".jpg", quality=95)
    ds = build_dataset("folder", "all", root=root, **BINARY, snap_distance=0, max_far_fraction=1.0)
    ds.verify()
    assert ds.far_pixels > 0  # every pixel JPEG moved off 0 or 255 is far at distance 0, and counted
    with pytest.raises(DatasetError, match="max_far_fraction is 0.0"):
        build_dataset("folder", "all", root=root, **BINARY, snap_distance=0, max_far_fraction=0.0).verify()


def test_gif_masks_read_as_the_grey_levels_they_show(tmp_path):
    root = make_own_folder(tmp_path, mask_ext=".gif")
    with Image.open(root / "masks" / "case_00.gif") as img:
        indices = np.asarray(img)
    assert img.mode == "P" and set(np.unique(indices)) == {0, 1}  # GIF stores 0/255 as indices 0/1
    assert set(np.unique(read_mask_file(root / "masks" / "case_00.gif").data)) == {0, 255}
    ds = build_dataset("folder", "all", root=root, **BINARY)
    assert torch.equal(ds[0][1], torch.from_numpy(indices.astype(np.int64)))


@pytest.mark.parametrize("suffix,bilevel", [(".tif", False), (".tif", True), (".bmp", False), (".bmp", True)])
def test_tiff_and_bmp_masks(tmp_path, suffix, bilevel):
    root = make_own_folder(tmp_path, n=2, mask_ext=suffix)
    if bilevel:  # 1-bit files: a viewer shows 0 and 255
        for path in (root / "masks").iterdir():
            Image.open(path).convert("1").save(path)
    ds = build_dataset("folder", "all", root=root, **BINARY)
    raw = np.asarray(Image.open(ds.samples[0][1]).convert("L"))
    assert torch.equal(ds[0][1], torch.from_numpy((raw == 255).astype(np.int64)))


def test_rgb_colour_masks(tmp_path):
    root = make_own_folder(tmp_path, colours=COLOURS)
    declared = {"classes": {"void": list(COLOURS[0]), "road": list(COLOURS[1]), "sky": list(COLOURS[2])}}
    ds = build_dataset("folder", "all", root=root, **declared)
    raw = mask_of(root, "case_00")
    mask = ds[0][1].numpy()
    for class_id, colour in enumerate(COLOURS):
        assert (mask[(raw == colour).all(axis=2)] == class_id).all()
    assert ds.palette == tuple(COLOURS)
    # a colour left out is an error naming file, colour and count
    partial = {"classes": {"void": [0, 0, 0], "road": [128, 64, 128]}}
    count = int((raw == COLOURS[2]).all(axis=2).sum())
    with pytest.raises(DatasetError, match=rf"case_00\.png holds colour \[0, 128, 192\] in {count} pixels"):
        build_dataset("folder", "all", root=root, **partial)[0]
    # undeclared colour masks stop the build with the colours to declare
    with pytest.raises(DatasetError, match=r"is a colour image .*\n.*\[0, 128, 192\]"):
        build_dataset("folder", "all", root=root)
    # a declaration of values does not silently turn colours into grey
    with pytest.raises(DatasetError, match=r"case_00\.png is a colour image .*lists grey values"):
        build_dataset("folder", "all", root=root, **BINARY)[0]


# ---------------------------------------------------------------- names and folders

def test_drive_style_suffixes_and_folders(tmp_path):
    root = make_own_folder(tmp_path, image_ext=".tif", mask_ext=".gif", image_name="{id}_training",
                           mask_name="{id}_manual1", images="training/images", masks="training/1st_manual")
    options = {**BINARY, "images": "training/images", "masks": "training/1st_manual",
               "image_name": "{id}_training", "mask_name": "{id}_manual1"}
    ds = build_dataset("folder", "all", root=root, **options)
    assert [(i.name, m.name) for i, m in ds.samples][:2] == [("case_00_training.tif", "case_00_manual1.gif"),
                                                            ("case_01_training.tif", "case_01_manual1.gif")]
    (root / "training" / "1st_manual" / "case_03_manual1.gif").unlink()
    with pytest.raises(DatasetError, match=r"case_03_training\.tif has no mask in .*1st_manual "
                                           r"\(expected case_03_manual1\.png, \.gif"):
        build_dataset("folder", "all", root=root, **options)


def test_masks_with_a_suffix_in_the_image_folder(tmp_path):
    root = make_own_folder(tmp_path, n=3, mask_name="{id}_segmentation", masks="images")
    ds = build_dataset("folder", "all", root=root, **BINARY, mask_name="{id}_segmentation", masks="images")
    assert [i.name for i, _ in ds.samples] == ["case_00.png", "case_01.png", "case_02.png"]
    assert all(m.name == f"{i.stem}_segmentation.png" for i, m in ds.samples)


def test_a_jpeg_mask_next_to_its_image_is_paired(tmp_path):
    # formerly "has no label" although masks/<stem>.jpg was there
    root = make_own_folder(tmp_path, n=2, mask_ext=".jpg")
    assert len(build_dataset("folder", "all", root=root, **BINARY)) == 2


# ---------------------------------------------------------------- sizes and image formats

def test_a_mask_of_another_size_is_an_error_or_resized_on_request(tmp_path, capsys):
    root = make_own_folder(tmp_path, n=3)
    Image.fromarray(np.full((23, 31), 255, np.uint8)).save(root / "masks" / "case_01.png")
    with pytest.raises(DatasetError, match=r"case_01\.png is 31x23 but its image is 32x24"):
        build_dataset("folder", "all", root=root, **BINARY)[1]
    ds = build_dataset("folder", "all", root=root, **BINARY, resize_masks=True)
    assert "1 of 3 masks differ in size from their image and are resized" in capsys.readouterr().err
    assert ds.resized_masks == [root / "masks" / "case_01.png"]
    mask = ds[1][1]
    assert mask.shape == (24, 32) and set(mask.unique().tolist()) == {1}
    # read_mask (class weights) resizes like load, from the image file's header
    assert torch.equal(ds.read_mask(1), mask)


def test_greyscale_and_16_bit_images_become_3_channel_8_bit(tmp_path):
    root = make_own_folder(tmp_path, n=2)
    image_path = root / "images" / "case_00.png"
    wide = np.zeros((24, 32), np.uint16)
    wide[:, 16:] = 4095  # 12-bit data in a 16-bit file: the stretch uses the image's own range
    wide[0, 0] = 1000
    Image.fromarray(wide).save(image_path)
    assert Image.open(image_path).mode.startswith("I")
    image = build_dataset("folder", "all", root=root, **BINARY)[0][0]
    assert image.dtype == torch.uint8 and image.shape == (3, 24, 32)
    assert image[:, 0, 16].tolist() == [255] * 3 and image[:, 1, 0].tolist() == [0] * 3
    assert image[0, 0, 0].item() == round(1000 * 255 / 4095)
    Image.fromarray(np.full((24, 32), 77, np.uint8)).save(root / "images" / "case_01.png")
    image = build_dataset("folder", "all", root=root, **BINARY)[1][0]
    assert (image == 77).all()  # greyscale: the value in all three channels


@pytest.mark.parametrize("suffix", [".jpg", ".tif", ".bmp", ".gif"])
def test_image_formats(tmp_path, suffix):
    root = make_own_folder(tmp_path, n=2, image_ext=suffix)
    image, mask = build_dataset("folder", "all", root=root, **BINARY)[0]
    assert image.shape == (3, 24, 32) and image.dtype == torch.uint8 and mask.shape == (24, 32)


# ---------------------------------------------------------------- tools/inspect_data.py

def test_inspect_data_reports_and_says_what_to_declare(tmp_path, capsys):
    root = make_own_folder(tmp_path, n=4)
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(root / "images" / "lonely.png")
    raw = np.stack([mask_of(root, f"case_{k:02d}") for k in range(4)])
    assert inspect_data.main([str(root)]) == 1
    out = capsys.readouterr().out
    assert "pairs: 4   unpaired images: 1   unpaired masks: 0" in out
    assert "image sizes (width x height): min 32x24, median 32x24, max 32x24" in out
    assert f"{100 * (raw == 255).mean():6.2f} %" in out and f"{100 * (raw == 0).mean():6.2f} %" in out
    assert '{"classes": {"background": 0, "foreground": 255}}' in out and "lonely.png" in out

    (root / "images" / "lonely.png").unlink()
    assert inspect_data.main([str(root), "--dataset-kwargs", json.dumps(BINARY)]) == 0
    out = capsys.readouterr().out
    ds = {s: build_dataset("folder", s, root=root, **BINARY) for s in ("train", "val")}
    for split, dataset in ds.items():  # the per-split class shares match the data set's own masks
        masks = torch.stack([dataset[i][1] for i in range(len(dataset))])
        assert f"{100 * (masks == 1).float().mean().item():13.2f}%" in out.split("foreground")[1].split("\n")[0]
        assert f"{split} ({len(dataset)})" in out
    assert "verdict: the data set loads as declared" in out


def test_inspect_data_lists_problems_without_stopping(tmp_path, capsys):
    root = make_own_folder(tmp_path, n=3)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "masks" / "case_02.png")
    (root / "images" / "case_01.png").write_bytes(b"not an image")
    assert inspect_data.main([str(root), "--dataset-kwargs", json.dumps(BINARY)]) == 1
    out = capsys.readouterr().out
    assert "cannot read image" in out and "case_01.png" in out
    assert "case_02.png is 20x20 but its image is 32x24" in out and '"resize_masks": true' in out


# ---------------------------------------------------------------- Dice

def test_dice_from_the_confusion_matrix():
    matrix = ConfusionMatrix(3)
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    prediction = torch.tensor([0, 0, 1, 1, 2, 2])
    matrix.update(prediction, target)
    metrics = matrix.compute()
    # class 0: tp 2, fp 0, fn 1 -> 4/5; class 1: tp 1, fp 1, fn 1 -> 2/4; class 2: tp 1, fp 1, fn 0 -> 2/3
    assert metrics["dice"] == pytest.approx([0.8, 0.5, 2 / 3])
    assert metrics["mean_dice"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    for iou, dice in zip(metrics["iou"], metrics["dice"]):
        assert dice == pytest.approx(2 * iou / (1 + iou))
    empty = ConfusionMatrix(2)
    empty.update(torch.tensor([0]), torch.tensor([0]))
    assert np.isnan(empty.compute()["dice"][1]) and empty.compute()["mean_dice"] == 1.0


def test_eval_prints_dice_and_writes_it_to_json(tmp_path, capsys):
    root = make_own_folder(tmp_path / "data", size=(16, 16), n=6)
    cfg = TrainConfig(model="u_net", model_kwargs={"width": 4, "depth": 2}, dataset="folder",
                      data_root=str(root), dataset_kwargs=BINARY, iters=2, batch_size=2, crop_size=16,
                      val_every=2, val_batch_size=2, workers=0, device="cpu", progress=False,
                      run_dir=str(tmp_path / "run"))
    Trainer(cfg).fit()
    capsys.readouterr()
    metrics = eval_script.main([str(tmp_path / "run" / "best.pth"), "--device", "cpu", "--workers", "0",
                                "--json", str(tmp_path / "eval.json")])
    out = capsys.readouterr().out
    assert f"mean_dice {metrics['mean_dice']:.4f}" in out
    assert "IoU    Dice" in out and "foreground" in out
    record = json.loads((tmp_path / "eval.json").read_text())
    assert set(record["dice_per_class"]) == {"background", "foreground"}
    assert record["mean_dice"] == pytest.approx(metrics["mean_dice"])
