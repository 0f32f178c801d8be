"""Shared bases of the training scripts, so that each script states only what its paper changes.

A script under train/<dataset>-<model>/ builds its configuration from bases and its own fields:

    recipe = Recipe(CITYSCAPES, slide_crop(769), model="deeplab_v3_plus", iters=90000, ...)
    cfg = recipe.config()

Bases apply in order over TrainConfig's defaults (a later base overrides an earlier one), then
the script's own fields. Two kinds of base:
- per data set: the splits the papers train and validate on, and what every script on that
  data set shares (CamVid's whole 360 x 480 frames and 10k-iteration schedule, for example);
- per paper family: the recipe of one group of papers used on several data sets (the FCN
  staged training on VOC, PSPNet's authors' network and recipe, GCN, DeepLab v3, SegNet's
  CamVid training, U-Net from scratch).
A field a script sets to the value its bases already give it restates them: `Recipe.restated`
names such fields, and tests/test_recipes.py keeps every script free of them.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from models import psp_net

from .train_config import TrainConfig

FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def _base(**fields: Any) -> dict:
    unknown = sorted(set(fields) - FIELDS)
    if unknown:
        raise TypeError(f"unknown TrainConfig field(s) in a recipe base: {', '.join(unknown)}")
    return fields


class Recipe:
    """Bases (dicts of TrainConfig fields, applied in order) plus the script's own fields."""

    def __init__(self, *bases: dict, **changes: Any) -> None:
        unknown = sorted(set(changes) - FIELDS)
        if unknown:
            raise TypeError(f"unknown TrainConfig field(s): {', '.join(unknown)}; "
                            f"see utils/engine.py for the fields a recipe can set")
        self.bases, self.changes = bases, changes

    def inherited(self) -> dict:
        """Every field as the bases leave it, before the script's own fields."""
        fields = dataclasses.asdict(TrainConfig())
        for base in self.bases:
            fields.update(_base(**base))
        return fields

    def restated(self) -> list[str]:
        """The script's fields whose value the bases (or TrainConfig's defaults) already give."""
        inherited = self.inherited()
        return sorted(name for name, value in self.changes.items() if _same(inherited[name], value))

    def config(self) -> TrainConfig:
        fields = {**self.inherited(), **self.changes}
        # Copies, so that no two scripts' configs share a base's dict.
        return TrainConfig(**{name: dict(value) if isinstance(value, dict) else value
                              for name, value in fields.items()})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)  # (360, 480) in a base and [360, 480] in a script: the same crop
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b  # True is not the iteration count 1
    return a == b


def slide_crop(size: int) -> dict:
    """Square training crops of `size`, validated by a sliding window of the same tile at 2/3 stride
    (the Cityscapes scripts: 1024 x 2048 images are too large for one forward pass)."""
    return _base(crop_size=size, val_mode="slide", val_tile=size, val_stride=round(2 * size / 3))


# ---------------------------------------------------------------- data sets
# Every script on a real benchmark starts its backbone from ImageNet weights, as its paper did
# (the U-Net base turns that off).

SHAPES = _base(dataset="shapes", train_split="train", val_split="val")
VOC = _base(dataset="voc_aug", train_split="train_aug", val_split="val", pretrained=True)
CITYSCAPES = _base(dataset="cityscapes", train_split="train", val_split="val", pretrained=True)
# The Cityscapes scripts other than PSPNet's: 768 x 768 crops, 80k iterations.
CITYSCAPES_SCHEDULE = _base(**slide_crop(768), iters=80000, val_every=10000)
ADE20K = _base(dataset="ade20k", train_split="train", val_split="val", pretrained=True)
# CamVid: whole 360 x 480 frames (nothing padded into BatchNorm's statistics), 10k iterations.
CAMVID = _base(dataset="camvid", train_split="train", val_split="val", pretrained=True, crop_size=(360, 480),
               iters=10000, val_every=1000, val_batch_size=4)
ISBI = _base(dataset="isbi", train_split="train", val_split="val")
# DRIVE's archive as it unpacks (Staal et al. 2004), read by the `folder` data set: training/images/
# 21_training.tif, training/1st_manual/21_manual1.gif (0/255 vessels), training/mask/21_training_mask.gif
# (the field of view, a region of interest: pixels outside it are ignored in loss and metrics).
DRIVE_TRAINING_DECLARATION = {
    "classes": {"background": 0, "vessel": 255},
    "images": "training/images", "image_name": "{id}_training",
    "masks": "training/1st_manual", "mask_name": "{id}_manual1",
    "roi": "training/mask", "roi_name": "{id}_training_mask",
}
DRIVE = _base(dataset="folder", dataset_kwargs=DRIVE_TRAINING_DECLARATION)

# ---------------------------------------------------------------- paper families

# FCN on VOC (Long et al. 2015, Sec. 4.2): Caffe's VGG16, minibatches of 20 whole images, no
# augmentation, SGD with momentum 0.9, weight decay 5e-4, a constant learning rate.
FCN_VOC = _base(backbone="vgg16_caffe", batch_size=20, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                poly_power=0.0, crop_size=512, scale_min=1.0, scale_max=1.0, hflip=False, val_mode="whole",
                val_batch_size=1)
# FCN-16s and FCN-8s: each stage from the coarser net, at 100 times FCN-32s's learning rate below.
FCN_LATER_STAGE = _base(lr=1e-6, iters=8000, val_every=1000)

# PSPNet's authors' network and recipe (hszhao/semseg): deep-base ResNet, their model options,
# 10x learning rate outside the backbone, rotation and blur, their test protocol.
PSPNET = _base(model="psp_net", model_kwargs=dict(psp_net.SEMSEG_OPTIONS), pretrained=True, batch_size=16,
               optimizer="sgd", lr=0.01, head_lr_mult=10.0, momentum=0.9, weight_decay=1e-4, poly_power=0.9,
               aux_weight=0.4, scale_min=0.5, scale_max=2.0, rotate=10.0, blur=0.5, hflip=True,
               val_protocol="semseg", val_batch_size=1)

# GCN (Peng et al. 2017, Sec. 4): ResNet-152, k = 15, batch 1, SGD lr 1e-4 with momentum 0.99,
# weight decay 5e-4, no random scaling.
GCN = _base(model="gcn", backbone="resnet152", model_kwargs={"kernel_size": 15}, batch_size=1, optimizer="sgd",
            lr=1e-4, momentum=0.99, weight_decay=5e-4, poly_power=0.9, scale_min=1.0, scale_max=1.0)

# DeepLab v3 (Chen et al. 2017): ResNet-101, batch 16.
DEEPLAB_V3 = _base(model="deeplab_v3", backbone="resnet101", batch_size=16)

# SegNet's CamVid training (Badrinarayanan et al. 2017, Sec. 4.1): batch 12, no augmentation,
# median-frequency class weights, SGD lr 0.1 constant, momentum 0.9, weight decay 5e-4.
SEGNET_CAMVID = _base(batch_size=12, class_weights="median-freq", optimizer="sgd", lr=0.1, momentum=0.9,
                      weight_decay=5e-4, poly_power=0.0, scale_min=1.0, scale_max=1.0, hflip=False,
                      val_mode="whole")

# U-Net (Ronneberger et al. 2015): no backbone, trained from scratch.
U_NET = _base(model="u_net", pretrained=False)
