"""Where data sets, pretrained weights and training runs live.

Every path can be overridden by an environment variable, so the same checkout
works on a laptop, a workstation and a cluster without editing code:

    SEG_DATA     folder holding every data set, one subfolder each
                 (default: ./data next to this file)
    SEG_WEIGHTS  folder holding torchvision-format pretrained weight files
                 (default: torchvision's own cache, $TORCH_HOME/hub/checkpoints)
    SEG_RUNS     folder where each training run writes checkpoints and
                 TensorBoard events (default: ./runs next to this file)
"""
from __future__ import annotations

import os
from pathlib import Path

import torch.hub

REPO_ROOT = Path(__file__).resolve().parent

# Each data set's default folder name under SEG_DATA. A data set that is not
# listed here lives in SEG_DATA/<registry name>.
DATASET_FOLDERS = {
    "voc": "VOCdevkit/VOC2012",
    # voc_aug needs VOCdevkit/VOC2012 and benchmark_RELEASE side by side: by default both
    # sit directly in SEG_DATA, so voc and voc_aug share one copy of VOC.
    "voc_aug": ".",
    "cityscapes": "cityscapes",
    "ade20k": "ADEChallengeData2016",
    "camvid": "camvid",
    "isbi": "isbi2012",
}


def data_dir() -> Path:
    return Path(os.environ.get("SEG_DATA", REPO_ROOT / "data")).expanduser()


def weights_dir() -> Path:
    default = Path(torch.hub.get_dir()) / "checkpoints"
    return Path(os.environ.get("SEG_WEIGHTS", default)).expanduser()


def runs_dir() -> Path:
    return Path(os.environ.get("SEG_RUNS", REPO_ROOT / "runs")).expanduser()


def dataset_root(name: str) -> Path:
    """Default root of data set `name`: SEG_DATA/<its folder>."""
    return data_dir() / DATASET_FOLDERS.get(name, name)
