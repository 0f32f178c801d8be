"""Masks that people really produce are read right or refused with the cause: soft edges, lossy
WebP and JPEG-in-TIFF, class ids under JPEG, palette PNGs whose used colours are grey, more than
255 classes, 16-bit images, overlapping split lists, far pixels reported at build.

Every file is written here by the real encoders (Pillow's WebP, libtiff's JPEG, PNG palettes).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import DatasetError, build_dataset
from datasets.base import to_rgb8
from datasets.folder import default_split, resize_nearest
from datasets.folder.mask_files import ramp_pixels, read_mask_file
from datasets.voc import VOC_PALETTE
from tools.fake_data import make_own_folder
from tools import inspect_data

SIZE = (24, 32)


def disc(size, scale: int = 1, centre=(11, 17), radius=7.5) -> np.ndarray:
    """A 0/255 disc drawn at `scale` times the size."""
    h, w = size[0] * scale, size[1] * scale
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (yy + 0.5 - centre[0] * scale) ** 2 + (xx + 0.5 - centre[1] * scale) ** 2 < (radius * scale) ** 2
    return np.where(inside, 255, 0).astype(np.uint8)


def soft_masks(root: Path, n: int = 3) -> Path:
    """0/255 masks drawn at 4x and shrunk with bilinear interpolation (Image.resize's way)."""
    make_own_folder(root, size=SIZE, n=n)
    for k in range(n):
        big = Image.fromarray(disc(SIZE, 4, centre=(11 + k, 15 + k)))
        big.resize((SIZE[1], SIZE[0]), Image.BILINEAR).save(root / "masks" / f"case_{k:02d}.png")
    return root


def suggestion(message: str) -> dict:
    """The declaration that a refusal suggests (the first JSON object on its own line)."""
    return json.loads(re.search(r"^\s+(\{.*\})$", message, re.M).group(1))


def write_ids(root: Path, ids_of, suffix: str, **save) -> None:
    """Replace each mask of a make_own_folder tree by `ids_of(k)` saved as `suffix` with `save` options."""
    for path in sorted((root / "masks").iterdir()):
        k = int(path.stem.split("_")[1])
        path.unlink()
        Image.fromarray(ids_of(k)).save(path.with_suffix(suffix), **save)


def class_ids(k: int) -> np.ndarray:
    """Four vertical bands of class ids 0..3 (values 0..3)."""
    return np.repeat((np.arange(SIZE[1]) * 4 // SIZE[1])[None, :], SIZE[0], 0).astype(np.uint8)


# ---------------------------------------------------------------- 1. soft edges

def test_soft_edged_masks_stop_with_the_cause_and_a_declaration_that_snaps(tmp_path):
    root = soft_masks(tmp_path)
    mask = np.asarray(Image.open(root / "masks" / "case_00.png"))
    assert len(np.unique(mask)) > 10  # grey levels all along the edge
    with pytest.raises(DatasetError, match="intermediate grey levels left by resizing") as err:
        build_dataset("folder", "all", root=root)
    declared = suggestion(str(err.value))
    assert declared == {"classes": {"background": 0, "foreground": 255}, "snap": True}
    ds = build_dataset("folder", "all", root=root, **declared)
    # snapped to the nearest declared value: foreground where the level is at least 128
    assert np.array_equal(ds[0][1].numpy(), (mask >= 128).astype(np.int64))
    # the same values declared without snapping: the error names the undeclared levels and the remedy
    with pytest.raises(DatasetError, match=r"case_00\.png holds value .*declare \"snap\": true"):
        build_dataset("folder", "all", root=root, classes={"background": 0, "foreground": 255})[0]


def test_snapping_still_refuses_a_declaration_that_misses_a_flat_region(tmp_path):
    root = soft_masks(tmp_path, n=2)
    for k in range(2):  # a flat region of 128 (a third class) that the declaration leaves out
        mask = np.asarray(Image.open(root / "masks" / f"case_{k:02d}.png")).copy()
        mask[:, :6] = 128
        Image.fromarray(mask).save(root / "masks" / f"case_{k:02d}.png")
    with pytest.raises(DatasetError, match=r"is snapped \(snap: true\) and \d+ of its 768 pixels .*off the edges"):
        build_dataset("folder", "all", root=root, classes={"background": 0, "foreground": 255}, snap=True)


def test_ramp_pixels_mark_interpolated_edges_not_class_regions():
    soft = np.asarray(Image.fromarray(disc(SIZE, 4)).resize((SIZE[1], SIZE[0]), Image.BILINEAR))
    between = (soft > 0) & (soft < 255)
    assert ramp_pixels(soft)[between].all() and not ramp_pixels(soft)[~between].any()
    ids = np.zeros(SIZE, np.int64)
    ids[:, 10:20], ids[5:9] = 1, 3
    assert not ramp_pixels(ids).any()


# ---------------------------------------------------------------- 2. lossy formats decided by encoding

@pytest.mark.parametrize("suffix,save,lossy", [
    (".webp", {"quality": 60}, "lossy WebP"),
    (".webp", {"lossless": True}, None),
    (".tif", {"compression": "jpeg"}, "JPEG-compressed TIFF"),
    (".tif", {"compression": "tiff_lzw"}, None),
])
def test_lossiness_comes_from_the_real_encoding(tmp_path, suffix, save, lossy):
    path = tmp_path / f"mask{suffix}"
    Image.fromarray(class_ids(0) * 60).save(path, **save)
    raw = read_mask_file(path)
    assert raw.lossy == (lossy is not None)
    assert raw.format == (lossy or Image.open(path).format)


def test_class_ids_in_lossy_webp_stop_and_in_lossless_webp_load_exactly(tmp_path):
    lossy = make_own_folder(tmp_path / "lossy", size=SIZE, n=3)
    write_ids(lossy, class_ids, ".webp", quality=60)
    with pytest.raises(DatasetError, match=r"stored lossily \(lossy WebP; 3 such masks\).*Re-save the masks "
                                           r"losslessly"):
        build_dataset("folder", "all", root=lossy)
    exact = make_own_folder(tmp_path / "exact", size=SIZE, n=3)
    write_ids(exact, class_ids, ".webp", lossless=True)
    ds = build_dataset("folder", "all", root=exact)
    assert ds.num_classes == 4 and np.array_equal(ds[0][1].numpy(), class_ids(0))


def test_class_ids_in_jpeg_compressed_tiff_are_not_taken_as_exact(tmp_path):
    root = make_own_folder(tmp_path, size=SIZE, n=3)
    write_ids(root, lambda k: class_ids(k) * 85, ".tif", compression="jpeg")  # 0/85/170/255: spread apart
    with pytest.raises(DatasetError, match=r"stored lossily \(JPEG-compressed TIFF; 3 such masks\)") as err:
        build_dataset("folder", "all", root=root)
    declared = suggestion(str(err.value))
    assert sorted(declared["classes"].values()) == [0, 85, 170, 255]
    ds = build_dataset("folder", "all", root=root, **declared)
    assert np.array_equal(ds[0][1].numpy(), class_ids(0))


# ---------------------------------------------------------------- 3. class ids under JPEG

def test_declared_values_closer_than_the_jpeg_noise_are_refused(tmp_path):
    root = make_own_folder(tmp_path, size=SIZE, n=2)
    write_ids(root, class_ids, ".jpg", quality=75)
    with pytest.raises(DatasetError, match=r"stored lossily \(JPEG\), but the declaration .* lists values 0 and 1, "
                                           r"1 level\(s\) apart: closer than snap_distance \(48\)"):
        build_dataset("folder", "all", root=root, classes=["a", "b", "c", "d"])
    # without a declaration, no suggestion that would put every pixel in one class
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", "all", root=root)
    assert "do not survive lossy compression" in str(err.value) and '"classes"' not in str(err.value)


def test_jpeg_noise_around_0_and_255_is_not_taken_for_close_class_ids(tmp_path):
    root = make_own_folder(tmp_path, size=SIZE, n=4, mask_ext=".jpg", quality=95)
    with pytest.raises(DatasetError) as err:
        build_dataset("folder", "all", root=root)
    assert suggestion(str(err.value)) == {"classes": {"background": 0, "foreground": 255}}


# ---------------------------------------------------------------- 4. palette masks: one reading per set

def test_palette_masks_are_indices_even_where_the_used_colours_are_grey(tmp_path):
    root = make_own_folder(tmp_path, size=SIZE, n=3)
    palette = [c for colour in VOC_PALETTE for c in colour]
    assert VOC_PALETTE[7] == (128, 128, 128)  # car: a grey
    for k, other in enumerate((15, 12, 7)):  # person, dog, and a mask of only background and car
        ids = np.zeros(SIZE, np.uint8)
        ids[6:18, 8:24] = other
        image = Image.fromarray(ids, mode="P")
        image.putpalette(palette)
        image.save(root / "masks" / f"case_{k:02d}.png")
    (root / "classes.txt").write_text("".join(f"class{i}\n" for i in range(21)))
    ds = build_dataset("folder", "all", root=root)
    assert ds.palette_reading == "indices"
    assert set(np.unique(ds[2][1].numpy())) == {0, 7}  # not grey levels 0 and 128
    assert ds.palette[7] == (128, 128, 128)


def test_gif_masks_of_a_set_stay_grey_levels(tmp_path):
    root = make_own_folder(tmp_path, size=SIZE, n=2, mask_ext=".gif")
    ds = build_dataset("folder", "all", root=root, classes={"background": 0, "foreground": 255})
    assert ds.palette_reading == "grey" and ds[0][1].max().item() == 1


# ---------------------------------------------------------------- 5. more than 255 classes

def test_16_bit_masks_of_more_than_255_ids_are_refused(tmp_path):
    root = make_own_folder(tmp_path, size=(40, 64), n=2)
    blocks = np.random.default_rng(0).permutation(320).reshape(20, 16) % 300  # ids 0..299 in 2 x 4 blocks
    write_ids(root, lambda k: np.kron(blocks, np.ones((2, 4), np.int64)).astype(np.uint16), ".png")
    assert read_mask_file(root / "masks" / "case_00.png").data.max() == 299
    with pytest.raises(DatasetError, match=r"values up to 299 .*At most 255 classes \(ids 0\.\.254\)"):
        build_dataset("folder", "all", root=root)
    with pytest.raises(DatasetError, match="300 classes are given"):
        (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(300)))
        write_ids(root, lambda k: np.kron(class_ids(k)[:20, :16], np.ones((2, 4), np.uint16)), ".png")
        build_dataset("folder", "all", root=root)


def test_resizing_masks_keeps_values_above_255():
    ids = np.array([[0, 300], [256, 65535]], np.int64)
    assert np.array_equal(resize_nearest(ids, (4, 4)), np.kron(ids, np.ones((2, 2), np.int64)))


# ---------------------------------------------------------------- 6. 16-bit images

def test_16_bit_images_stretch_from_their_own_minimum():
    values = np.linspace(1000, 4000, 4 * 5).reshape(4, 5).astype(np.uint16)
    rgb = to_rgb8(Image.fromarray(values))
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[-1, -1].tolist() == [255, 255, 255]
    expected = np.rint((values - 1000.0) * 255 / 3000)
    assert np.array_equal(rgb[..., 0], expected.astype(np.uint8))


# ---------------------------------------------------------------- 7. overlapping split lists

def test_a_stem_in_two_split_lists_stops_naming_it(tmp_path):
    root = make_own_folder(tmp_path, size=SIZE, n=4)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("case_00\ncase_01\ncase_02\n")
    (root / "splits" / "val.txt").write_text("case_02\ncase_03\n")
    (root / "splits" / "trainval.txt").write_text("case_00\ncase_01\ncase_02\ncase_03\n")  # a union: fine
    for split in ("train", "val", "trainval"):
        with pytest.raises(DatasetError, match=r"1 stem\(s\) are listed in both .*train\.txt and .*val\.txt: "
                                               r"case_02\."):
            build_dataset("folder", split, root=root, classes={"background": 0, "foreground": 255})
    (root / "splits" / "val.txt").write_text("case_03\n")
    assert len(build_dataset("folder", "trainval", root=root, classes={"background": 0, "foreground": 255})) == 4


# ---------------------------------------------------------------- 8. far pixels reported at build

def test_far_pixels_of_lossy_masks_are_reported_when_the_data_set_is_built(tmp_path, capsys):
    root = make_own_folder(tmp_path, size=SIZE, n=3, mask_ext=".jpg", quality=95)
    ds = build_dataset("folder", "train", root=root, classes={"background": 0, "foreground": 255},
                       snap_distance=0, max_far_fraction=1.0)
    line = capsys.readouterr().err
    reported = int(re.search(r"snapped to the declared values \(\d+ JPEG\); (\d+) of their", line).group(1))
    ds.verify()
    assert reported == ds.far_pixels > 0
    assert "lossy masks: 3 (JPEG 3)" in inspect_data.format_report(inspect_data.inspect(
        root, {"classes": {"background": 0, "foreground": 255}}, progress=False))


# ---------------------------------------------------------------- regions of interest in the report

def test_inspect_data_reports_the_share_of_pixels_outside_the_regions(tmp_path, capsys):
    """A DRIVE-like tree: TIFF images, GIF vessel masks, GIF field-of-view masks beside them."""
    root = tmp_path / "drive"
    declaration = {"classes": {"background": 0, "vessel": 255}, "images": "training/images",
                   "masks": "training/1st_manual", "image_name": "{id}_training", "mask_name": "{id}_manual1",
                   "roi": "training/mask", "roi_name": "{id}_training_mask"}
    outside, per_split = 0, {"train": [0, 0], "val": [0, 0]}  # split -> [outside, pixels]
    for k in (21, 22, 23, 24, 25):
        folders = {name: root / "training" / name for name in ("images", "1st_manual", "mask")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        rgb = np.random.default_rng(k).integers(0, 255, (*SIZE, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folders["images"] / f"{k}_training.tif")
        Image.fromarray(disc(SIZE, radius=4 + k % 3)).save(folders["1st_manual"] / f"{k}_manual1.gif")
        field_of_view = disc(SIZE, radius=10)
        outside += int((field_of_view == 0).sum())
        counts = per_split[default_split(f"{k}_training")]
        counts[0] += int((field_of_view == 0).sum())
        counts[1] += field_of_view.size
        Image.fromarray(field_of_view).save(folders["mask"] / f"{k}_training_mask.gif")
    (root / "dataset.json").write_text(json.dumps(declaration))
    assert inspect_data.main([str(root)]) == 0
    text = capsys.readouterr().out
    share = 100 * outside / (5 * SIZE[0] * SIZE[1])
    assert f"regions of interest (training/mask/{{id}}_training_mask): 5 read; {share:.2f} % of the label" in text
    # the class table (train, val) counts the pixels outside as ignored
    ignored = re.search(r"\(ignored\)\s+([\d.]+)%\s+([\d.]+)%", text)
    assert per_split["train"][1] and per_split["val"][1]
    for cell, split in zip(ignored.groups(), ("train", "val")):
        assert float(cell) == pytest.approx(100 * per_split[split][0] / per_split[split][1], abs=0.01)
    (root / "training" / "mask" / "22_training_mask.gif").unlink()
    assert inspect_data.main([str(root)]) == 1
    assert "22_training_mask" in capsys.readouterr().out
