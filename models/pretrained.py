"""Finding and loading the ImageNet weight files that `--pretrained` starts a backbone from.

Pretrained weights are torchvision's ImageNet files, looked up by file name in
`config.weights_dir()` (torchvision's own cache by default, or $SEG_WEIGHTS); a missing
one is downloaded from its official URL and verified (models/weight_download.py) unless
SEG_OFFLINE=1 or --no-download. They are loaded strictly, so a file that does not match
is an error, never a silent partial load. Two other sources: the FCN paper's Caffe VGG16
converted by jcjohnson/pytorch-vgg, and hszhao/semseg's deep-base ResNets (PSPNet).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

import config
from .layers import rename_by_prefix
from .weight_download import download_allowed, expected_sha256, fetch

# Caffe's VGG16 (the FCN paper's ImageNet model) converted to torchvision's VGG16 layout by
# jcjohnson/pytorch-vgg: (torchvision architecture, download URL).
CAFFE_VGG_WEIGHTS = {
    "vgg16_caffe": ("vgg16", "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth"),
}


# The deep-base ResNets of hszhao/semseg (PSPNet's authors): (torchvision architecture whose
# blocks they share, the authors' ImageNet file name). The files are published in the
# authors' Google Drive folder (their README's "initmodel"), which has no per-file URL.
DEEP_RESNET_WEIGHTS = {
    "resnet50_deep": ("resnet50", "resnet50_v2.pth"),
    "resnet101_deep": ("resnet101", "resnet101_v2.pth"),
}
SEMSEG_DRIVE_URL = "https://drive.google.com/open?id=15wx9vOM0euyizq-M1uINgN0_wjVRf9J3"
_OFFLINE_NOTE = " (Not downloaded: SEG_OFFLINE=1 or --no-download.)"


def weight_url(arch: str) -> str:
    """Official download URL of the ImageNet weights for `arch` (torchvision's V1, as the papers used)."""
    if arch in CAFFE_VGG_WEIGHTS:
        return CAFFE_VGG_WEIGHTS[arch][1]
    if arch in DEEP_RESNET_WEIGHTS:
        return SEMSEG_DRIVE_URL
    return torchvision.models.get_model_weights(arch)["IMAGENET1K_V1"].url


def weight_path(arch: str) -> Path:
    if arch in DEEP_RESNET_WEIGHTS:
        return config.weights_dir() / DEEP_RESNET_WEIGHTS[arch][1]
    return config.weights_dir() / os.path.basename(urlparse(weight_url(arch)).path)


def load_pretrained(model: nn.Module, arch: str, path: str | os.PathLike | None = None, *,
                    assign: bool = False) -> None:
    """Load torchvision's ImageNet weights for `arch` strictly into `model`.

    `path` defaults to the file torchvision would download, inside the weights
    folder of config.py; when it is missing there, it is downloaded from the official
    URL and verified (models/weight_download.py) unless SEG_OFFLINE=1 or --no-download.
    A missing file is otherwise an error naming the path and the URL.
    `assign` replaces the parameters instead of copying into them (for models
    built on the meta device).
    """
    if path is None:
        path = weight_path(arch)
        if not path.is_file() and arch not in DEEP_RESNET_WEIGHTS and download_allowed():
            fetch(weight_url(arch), path, expected_sha256(path.name))  # verified; DownloadError otherwise
    path = Path(path)
    if not path.is_file() and arch in DEEP_RESNET_WEIGHTS:
        raise FileNotFoundError(
            f"pretrained weights for {arch} (the authors' deep-base ResNet of hszhao/semseg) not found at "
            f"{path}. Download {path.name} from the authors' folder {SEMSEG_DRIVE_URL} (their 'initmodel' "
            f"files) into {path.parent} (or set SEG_WEIGHTS to the folder that holds it), or train from "
            f"scratch with pretrained=False (--no-pretrained)."
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights for {arch} not found at {path}. Download "
            f"{weight_url(arch)} into {path.parent} (or set SEG_WEIGHTS to the "
            f"folder that holds it), or train from scratch with pretrained=False "
            f"(--no-pretrained).{'' if download_allowed() else _OFFLINE_NOTE}"
        )
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if arch in DEEP_RESNET_WEIGHTS:
        _load_deep_resnet(model, arch, path, state_dict)
        return
    state_dict = _fix_legacy_keys(arch, state_dict)
    try:
        model.load_state_dict(state_dict, strict=True, assign=assign)
    except RuntimeError as err:
        raise RuntimeError(f"{path} is not a torchvision {arch} state dict: {err}") from None


def _load_deep_resnet(model: nn.Module, arch: str, path: Path, state_dict: dict) -> None:
    """Load the authors' ImageNet file: their ResNet's key names (conv1..3, bn1..3, layer1..4, fc).

    Their own loader is lenient (strict=False); here only what a backbone cannot miss may be
    absent: the ImageNet classifier (dropped anyway) and BatchNorm's step counters (files
    saved before PyTorch 0.4.1 have none). Anything else missing or left over is an error.
    """
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # a shape that differs
        raise RuntimeError(f"{path} is not hszhao/semseg's {arch} ImageNet file: {err}") from None
    missing = [k for k in missing if not (k.startswith("fc.") or k.endswith("num_batches_tracked"))]
    if missing or unexpected:
        raise RuntimeError(f"{path} is not hszhao/semseg's {arch} ImageNet file: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")


def _fix_legacy_keys(arch: str, state_dict: dict) -> dict:
    """torchvision's DenseNet files still use the old 'norm.1' key names; the converted Caffe VGG16
    numbers its classifier as an early torchvision did (dropout first: Linear layers 1, 4, 6)."""
    if arch in CAFFE_VGG_WEIGHTS:
        renamed = (("classifier.1.", "classifier.0."), ("classifier.4.", "classifier.3."))
        if any(key.startswith("classifier.1.") for key in state_dict):
            return {rename_by_prefix(key, renamed) or key: value for key, value in state_dict.items()}
        return state_dict
    if not arch.startswith("densenet"):
        return state_dict
    pattern = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    fixed = {}
    for key, value in state_dict.items():
        match = pattern.match(key)
        fixed[match.group(1) + match.group(2) if match else key] = value
    return fixed
