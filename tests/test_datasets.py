"""Every data set on a fake copy in its real layout (tools/fake_data.py), plus the real
CamVid and ISBI 2012 copies in ../shared/data when present."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torchvision import tv_tensors

import datasets
from datasets import DatasetError, build_dataset
from datasets.camvid import CamVid
from datasets.cityscapes import Cityscapes
from datasets.folder import default_split
from tools import fake_data
from conftest import SHARED_DATA

N = 3
SIZE = (24, 32)
# data set -> split -> number of samples in the fake copy
SPLIT_SIZES = {
    "voc": {"train": N, "val": N, "trainval": 2 * N},
    "voc_aug": {"train_aug": 3 * N, "train": 3 * N, "val": N},
    "cityscapes": {"train": N, "val": N, "test": N},
    "ade20k": {"train": N, "val": N},
    "camvid": {"train": N, "val": N, "test": N},
    "folder": {"train": N, "val": N, "all": 2 * N},
    "isbi": {"train": 25, "val": 5, "all": 30},
}
# a raw label value that each data set does not define
BAD_ID = {"voc": 21, "voc_aug": 21, "cityscapes": 34, "ade20k": 151, "camvid": 12, "folder": 4, "isbi": 128}
NAMES = sorted(SPLIT_SIZES)


@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
    """One read-only fake copy of every data set, all under one SEG_DATA folder."""
    seg_data = tmp_path_factory.mktemp("seg_data")
    return seg_data, {name: fake_data.make(name, seg_data, SIZE, N) for name in NAMES}


def fresh(tmp_path, name, **options) -> Path:
    """A private copy to corrupt."""
    return fake_data.make(name, tmp_path, SIZE, N, **options)


def write_label(path: Path, ids: np.ndarray) -> None:
    """Overwrite a label file in its own format."""
    if path.suffix == ".mat":
        fake_data.write_sbd_mat(path, ids.astype(np.uint8))
    elif "SegmentationClass" in path.parts:
        fake_data._save(ids.astype(np.uint8), path, palette=fake_data.VOC_PALETTE)
    else:
        Image.fromarray(ids.astype(np.uint8)).save(path)


def raw_label(path: Path) -> np.ndarray:
    if path.suffix == ".mat":
        return scipy.io.loadmat(str(path))["GTcls"][0, 0]["Segmentation"].astype(np.int64)
    return np.asarray(Image.open(path)).astype(np.int64)


# ---------------------------------------------------------------- registry, metadata, splits

def test_registry_lists_every_data_set():
    assert set(NAMES) | {"shapes"} <= set(datasets.list_datasets())
    with pytest.raises(ValueError, match="choose one of"):
        datasets.dataset_class("nope")


@pytest.mark.parametrize("name", NAMES)
def test_split_sizes_and_metadata(fake_roots, name):
    _, roots = fake_roots
    for split, size in SPLIT_SIZES[name].items():
        ds = build_dataset(name, split, root=roots[name])
        assert len(ds) == size, (name, split)
        assert ds.ignore_index == 255
        assert len(ds.palette) == ds.num_classes == len(ds.classes)
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in ds.palette)
    expected = {"voc": 21, "voc_aug": 21, "cityscapes": 19, "ade20k": 150, "camvid": 11, "folder": 4, "isbi": 2}
    assert ds.num_classes == expected[name]


@pytest.mark.parametrize("name", NAMES)
def test_default_root_comes_from_seg_data(fake_roots, monkeypatch, name):
    seg_data, _ = fake_roots
    monkeypatch.setenv("SEG_DATA", str(seg_data))
    split = next(iter(SPLIT_SIZES[name]))
    assert len(build_dataset(name, split)) == SPLIT_SIZES[name][split]


@pytest.mark.parametrize("name", NAMES)
def test_unknown_split_lists_valid_ones(fake_roots, name):
    _, roots = fake_roots
    with pytest.raises(ValueError) as err:
        build_dataset(name, "bogus", root=roots[name])
    for split in SPLIT_SIZES[name]:
        assert split in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_samples_load_and_pair(fake_roots, name):
    _, roots = fake_roots
    for split in SPLIT_SIZES[name]:
        ds = build_dataset(name, split, root=roots[name])
        ds.verify()
        if not ds.has_labels:  # cityscapes test: checked in its own test
            continue
        image, mask = ds[0]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert mask.dtype == torch.int64 and mask.shape == image.shape[-2:]
        assert ((mask < ds.num_classes) | (mask == 255)).all()
        for image_path, label_path in ds.samples:
            if name == "cityscapes":
                assert label_path.name.startswith(image_path.name.removesuffix("_leftImg8bit.png"))
                assert label_path.parts[-3:-1] == image_path.parts[-3:-1]  # same split and city
            else:
                assert image_path.stem == label_path.stem


@pytest.mark.parametrize("name", NAMES + ["shapes"])
def test_read_mask_is_the_mask_of_getitem_without_transforms(fake_roots, name, monkeypatch):
    _, roots = fake_roots
    splits = SPLIT_SIZES.get(name, {"val": None})
    for split in splits:
        ds = build_dataset(name, split, root=roots.get(name), **({"length": 3} if name == "shapes" else {}))
        if not getattr(ds, "has_labels", True):
            with pytest.raises(DatasetError, match="no label"):
                ds.read_mask(0)
            continue
        masks = [ds.read_mask(i) for i in range(len(ds))]
        for index, mask in enumerate(masks):
            assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
            assert torch.equal(mask, ds[index][1]), (name, split, index)
        if name != "shapes":  # files: the mask alone, the image is never decoded
            for module in ("datasets.base", "datasets.folder.dataset"):
                monkeypatch.setattr(f"{module}.read_image", lambda path: pytest.fail(f"read {path}"))
            assert torch.equal(ds.read_mask(0), masks[0])
            monkeypatch.undo()


def test_each_data_set_names_its_own_folder():
    expected = {"voc": "VOCdevkit/VOC2012", "voc_aug": ".", "cityscapes": "cityscapes",
                "ade20k": "ADEChallengeData2016", "camvid": "camvid", "folder": "folder", "isbi": "isbi2012"}
    assert {name: datasets.dataset_class(name).folder for name in expected} == expected
    assert datasets.dataset_class("shapes").folder is None  # generated: no files
    with pytest.raises(ValueError, match="no default folder"):
        datasets.dataset_class("shapes").resolve_root("shapes", None)


def test_transforms_apply_to_image_and_mask(fake_roots):
    _, roots = fake_roots
    ds = build_dataset("camvid", "train", root=roots["camvid"], transforms=lambda i, m: (i[:, :8], m[:8]))
    image, mask = ds[0]
    assert image.shape[1] == 8 and mask.shape[0] == 8


# ---------------------------------------------------------------- label mapping

def test_cityscapes_label_ids_become_train_ids(fake_roots):
    _, roots = fake_roots
    ds = build_dataset("cityscapes", "train", root=roots["cityscapes"])
    for index, (_, label_path) in enumerate(ds.samples):
        raw = raw_label(label_path)
        mask = ds.load(index)[1].numpy()
        assert (mask[raw == 26] == 13).all() and (raw == 26).any()  # car
        assert (mask[raw == 0] == 255).all() and (raw == 0).any()   # unlabeled
        np.testing.assert_array_equal(mask, Cityscapes.lookup[raw])
    table = Cityscapes.lookup
    assert table[7] == 0 and table[24] == 11 and table[33] == 18 and table[29] == 255
    assert table[255] == 255  # license plate (-1) as stored in 8 bits
    assert sorted(set(table[:34].tolist()) - {255}) == list(range(19))


def test_cityscapes_test_split_is_predict_only(fake_roots):
    _, roots = fake_roots
    ds = build_dataset("cityscapes", "test", root=roots["cityscapes"])
    assert not ds.has_labels and ds.samples[0][1] is None
    with pytest.raises(DatasetError, match="only usable for prediction") as err:
        ds[0]
    assert str(ds.samples[0][0]) in str(err.value)
    assert ds.load_image(0).shape[0] == 3
    ds.verify()  # images only
    assert ds.sample_name(0) == "berlin_000000_000019"


def test_cityscapes_coarse_mode(fake_roots):
    _, roots = fake_roots
    for split in ("train", "train_extra", "val"):
        ds = build_dataset("cityscapes", split, root=roots["cityscapes"], mode="coarse")
        assert len(ds) == N
        assert all("_gtCoarse_labelIds.png" in str(label) for _, label in ds.samples)
        ds.verify()
    with pytest.raises(ValueError, match="train_extra"):
        build_dataset("cityscapes", "test", root=roots["cityscapes"], mode="coarse")
    with pytest.raises(ValueError, match="fine, coarse"):
        build_dataset("cityscapes", "train", root=roots["cityscapes"], mode="medium")


def test_voc_border_stays_255(fake_roots):
    _, roots = fake_roots
    ds = build_dataset("voc", "train", root=roots["voc"])
    raw = raw_label(ds.samples[0][1])
    mask = ds[0][1].numpy()
    assert (raw == 255).any() and (mask[raw == 255] == 255).all()
    np.testing.assert_array_equal(mask, raw)
    assert Image.open(ds.samples[0][1]).mode == "P"


def test_voc_accepts_the_folder_holding_vocdevkit(fake_roots):
    seg_data, _ = fake_roots
    assert len(build_dataset("voc", "val", root=seg_data)) == N


def test_voc_aug_train_aug_composition(fake_roots):
    _, roots = fake_roots
    root = roots["voc_aug"]
    voc_lists = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    voc_train = set(voc_lists.joinpath("train.txt").read_text().split())
    voc_val = set(voc_lists.joinpath("val.txt").read_text().split())
    sbd = root / "benchmark_RELEASE" / "dataset"
    sbd_ids = set(sbd.joinpath("train.txt").read_text().split()) | set(sbd.joinpath("val.txt").read_text().split())
    assert sbd_ids & voc_val  # the fake SBD holds a VOC val image, which must be dropped
    ds = build_dataset("voc_aug", "train_aug", root=root)
    ids = [image.stem for image, _ in ds.samples]
    assert len(ids) == len(set(ids))
    assert set(ids) == (sbd_ids | voc_train) - voc_val
    for index, (image, label) in enumerate(ds.samples):
        if image.stem in voc_train:  # VOC's own annotation, with its border
            assert label.suffix == ".png" and "VOCdevkit" in label.parts
        else:  # SBD's .mat, no border
            assert label.suffix == ".mat" and image.parent == sbd / "img"
            mask = ds.load(index)[1].numpy()
            np.testing.assert_array_equal(mask, raw_label(label))
            assert not (mask == 255).any()
    val = build_dataset("voc_aug", "val", root=root)
    assert {image.stem for image, _ in val.samples} == voc_val


def test_ade20k_zero_becomes_255_and_ids_shift(fake_roots):
    _, roots = fake_roots
    ds = build_dataset("ade20k", "val", root=roots["ade20k"])
    raw = raw_label(ds.samples[0][1])
    mask = ds[0][1].numpy()
    assert (raw == 0).any() and (mask[raw == 0] == 255).all()
    assert (raw == 150).any() and (mask[raw == 150] == 149).all()
    np.testing.assert_array_equal(mask[raw > 0], raw[raw > 0] - 1)
    assert ds.classes[0] == "wall" and ds.classes[-1] == "flag"


def test_camvid_unlabelled_becomes_255(fake_roots):
    _, roots = fake_roots
    ds = build_dataset("camvid", "train", root=roots["camvid"])
    raw = raw_label(ds.samples[0][1])
    mask = ds[0][1].numpy()
    assert (raw == 11).any() and (mask[raw == 11] == 255).all()
    np.testing.assert_array_equal(mask[raw < 11], raw[raw < 11])
    assert ds.palette[0] == (128, 128, 128) and ds.classes[-1] == "Bicyclist"


def test_isbi_cells_become_class_1(fake_roots):
    _, roots = fake_roots
    ds = build_dataset("isbi", "val", root=roots["isbi"])
    assert [p.name for p, _ in ds.samples] == [f"{n}.png" for n in range(25, 30)]
    raw = raw_label(ds.samples[0][1])
    image, mask = ds[0]
    assert (mask.numpy()[raw == 255] == 1).all() and (mask.numpy()[raw == 0] == 0).all()
    assert (image[0] == image[1]).all() and (image[1] == image[2]).all()
    train = build_dataset("isbi", "train", root=roots["isbi"])
    assert not {p.name for p, _ in train.samples} & {p.name for p, _ in ds.samples}


def test_folder_options(tmp_path):
    # palette masks, no classes.txt, no split lists: classes inferred, palette taken from the masks
    root = fake_data.make_folder(tmp_path, SIZE, 8, classes_txt=False, palette_masks=True, split_lists=False)
    ds = build_dataset("folder", "all", root=root)
    assert len(ds) == 16 and ds.num_classes == 4 and ds.classes[0] == "class_0"
    assert ds.palette[1] == (200, 30, 30)
    stems = [p.stem for p, _ in ds.samples]
    for split in ("train", "val"):
        expected = [s for s in stems if default_split(s) == split]
        assert expected, "the fake stems should fill both splits"
        assert [p.stem for p, _ in build_dataset("folder", split, root=root).samples] == expected
    assert build_dataset("folder", "all", root=root, num_classes=7).num_classes == 7
    # grey masks with classes.txt: names from the file, generated palette
    root = fresh(tmp_path / "b", "folder")
    ds = build_dataset("folder", "train", root=root)
    assert ds.classes == ("thing0", "thing1", "thing2", "thing3") and len(set(ds.palette)) == 4
    with pytest.raises(ValueError, match="classes.txt lists 4"):
        build_dataset("folder", "train", root=root, num_classes=5)
    (root / "splits" / "val.txt").write_text("img_999\n")
    with pytest.raises(DatasetError, match="img_999"):
        build_dataset("folder", "val", root=root)


# ---------------------------------------------------------------- bad data

@pytest.mark.parametrize("name", NAMES)
def test_missing_root_names_path_and_how_to_set_it(tmp_path, monkeypatch, name):
    split = next(iter(SPLIT_SIZES[name]))
    with pytest.raises(DatasetError) as err:
        build_dataset(name, split, root=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "--data-root" in str(err.value)
    monkeypatch.setenv("SEG_DATA", str(tmp_path / "empty"))
    if name == "voc_aug":  # its default root is SEG_DATA itself
        (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as err:
        build_dataset(name, split)
    assert str(tmp_path / "empty") in str(err.value) and "SEG_DATA" in str(err.value)


def _first(tmp_path, name):
    root = fresh(tmp_path, name)
    split = next(iter(SPLIT_SIZES[name]))
    ds = build_dataset(name, split, root=root)
    return root, split, ds.samples[0]


@pytest.mark.parametrize("name", NAMES)
def test_image_without_mask(tmp_path, name):
    root, split, (image, label) = _first(tmp_path, name)
    label.unlink()
    with pytest.raises(DatasetError) as err:
        build_dataset(name, split, root=root)
    assert str(image) in str(err.value) or str(label) in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_mask_without_image(tmp_path, name):
    root, split, (image, label) = _first(tmp_path, name)
    image.unlink()
    with pytest.raises(DatasetError) as err:
        build_dataset(name, split, root=root)
    assert str(label) in str(err.value) or str(image) in str(err.value)


def test_unpaired_files_outside_lists_are_named(tmp_path):
    root = fresh(tmp_path, "cityscapes")
    orphan = root / "gtFine" / "train" / "aachen" / "aachen_000099_000099_gtFine_labelIds.png"
    Image.fromarray(np.zeros(SIZE, np.uint8)).save(orphan)
    with pytest.raises(DatasetError, match="aachen_000099_000099_gtFine_labelIds.png has no image"):
        build_dataset("cityscapes", "train", root=root)
    (root / "gtFine" / "val" / "munich").mkdir()
    with pytest.raises(DatasetError, match="munich"):
        build_dataset("cityscapes", "val", root=root)
    root = fresh(tmp_path / "b", "isbi")
    Image.fromarray(np.zeros(SIZE, np.uint8)).save(root / "label" / "30.png")
    with pytest.raises(DatasetError, match=r"label .*30.png has no image"):
        build_dataset("isbi", "val", root=root)


@pytest.mark.parametrize("name", NAMES)
def test_size_mismatch_names_label(tmp_path, name):
    root, split, (image, label) = _first(tmp_path, name)
    write_label(label, np.zeros((SIZE[0] + 1, SIZE[1]), np.int64))
    ds = build_dataset(name, split, root=root)
    with pytest.raises(DatasetError, match="but its image is") as err:
        ds[0]
    assert str(label) in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_label_id_names_label(tmp_path, name):
    root, split, (image, label) = _first(tmp_path, name)
    ids = raw_label(label)
    ids[0, 0] = BAD_ID[name]
    write_label(label, ids)
    ds = build_dataset(name, split, root=root)
    with pytest.raises(DatasetError, match=f"id {BAD_ID[name]}") as err:
        ds.verify()
    assert str(label) in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_unreadable_files_are_named(tmp_path, name):
    root, split, (image, label) = _first(tmp_path, name)
    original = image.read_bytes()
    image.write_bytes(b"not an image")
    ds = build_dataset(name, split, root=root)
    with pytest.raises(DatasetError, match="cannot read image") as err:
        ds[0]
    assert str(image) in str(err.value)
    image.write_bytes(original)
    label.write_bytes(b"\x00garbage")
    with pytest.raises(DatasetError, match="cannot read label") as err:
        ds[0]
    assert str(label) in str(err.value)


def test_sbd_mat_errors(tmp_path):
    root = fresh(tmp_path, "voc_aug")
    ds = build_dataset("voc_aug", "train_aug", root=root)
    index = next(i for i, (_, label) in enumerate(ds.samples) if label.suffix == ".mat")
    label = ds.samples[index][1]
    scipy.io.savemat(str(label), {"GTinst": {"Segmentation": np.zeros(SIZE, np.uint8)}})
    with pytest.raises(DatasetError, match="GTcls") as err:
        ds.load(index)
    assert str(label) in str(err.value)
    write_label(label, np.full(SIZE, 30))
    with pytest.raises(DatasetError, match="holds id 30") as err:
        ds.load(index)
    assert str(label) in str(err.value)


def test_label_that_is_not_one_id_per_pixel(tmp_path):
    root = fresh(tmp_path, "camvid")
    ds = build_dataset("camvid", "train", root=root)
    Image.new("RGB", SIZE[::-1]).save(ds.samples[0][1])
    with pytest.raises(DatasetError, match="mode RGB"):
        ds[0]


# ---------------------------------------------------------------- the real copies in ../shared/data

REAL_CAMVID = SHARED_DATA / "camvid"
REAL_ISBI = SHARED_DATA / "isbi2012"


@pytest.mark.skipif(not REAL_CAMVID.is_dir(), reason=f"{REAL_CAMVID} absent")
def test_real_camvid():
    strip = np.asarray(Image.open(REAL_CAMVID / "palette11.png").convert("RGB"))[0, :11]
    assert [tuple(c) for c in strip.tolist()] == list(CamVid.palette)
    for split, size in (("train", 367), ("val", 101)):
        ds = build_dataset("camvid", split, root=REAL_CAMVID)
        assert len(ds) == size
        seen = set()
        for image_path, label_path in ds.samples:  # headers only for images: decoding all takes long
            with Image.open(image_path) as image:
                assert image.size == (480, 360) and image.mode == "RGB"
            ids = ds.read_ids(label_path)
            assert ids.shape == (360, 480)
            seen |= set(np.unique(ds.lookup[ids]).tolist())
        assert seen <= set(range(11)) | {255} and 255 in seen and len(seen) >= 10
        ds.load(0)


@pytest.mark.skipif(not REAL_ISBI.is_dir(), reason=f"{REAL_ISBI} absent")
def test_real_isbi():
    ds = build_dataset("isbi", "all", root=REAL_ISBI)
    assert len(ds) == 30
    assert len(build_dataset("isbi", "train", root=REAL_ISBI)) == 25
    assert len(build_dataset("isbi", "val", root=REAL_ISBI)) == 5
    seen = set()
    for index in range(len(ds)):
        image, mask = ds.load(index)
        assert tuple(image.shape) == (3, 512, 512) and mask.shape == (512, 512)
        seen |= set(torch.unique(mask).tolist())
    assert seen == {0, 1}


def test_generators_write_under_the_default_folders(tmp_path):
    shutil.rmtree(tmp_path)
    for name in NAMES:
        root = fake_data.make(name, tmp_path, 16, 2)
        assert root.is_dir() and root.is_relative_to(tmp_path)
