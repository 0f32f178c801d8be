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


def data_dir() -> Path:
    """SEG_DATA: each data set's default root is a subfolder of it, named by the data set's
    class (`folder` in its module under datasets/)."""
    return Path(os.environ.get("SEG_DATA", REPO_ROOT / "data")).expanduser()


def weights_dir() -> Path:
    default = Path(torch.hub.get_dir()) / "checkpoints"
    return Path(os.environ.get("SEG_WEIGHTS", default)).expanduser()


def runs_dir() -> Path:
    return Path(os.environ.get("SEG_RUNS", REPO_ROOT / "runs")).expanduser()

