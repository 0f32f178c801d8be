"""Turn a checkpoint released by another implementation into a checkpoint of ours.

    python tools/convert_checkpoint.py semseg-pspnet SRC DST --dataset voc|cityscapes|ade20k
    python tools/convert_checkpoint.py torchvision-deeplabv3 SRC DST

Sources:
  semseg-pspnet          hszhao/semseg's PSPNet-50 / -101, as its tool/train.py saves it
                         ({'epoch', 'state_dict': {'module.layer0.0.weight', ...}, 'optimizer'}).
                         The depth is read from the weights; --dataset names the data set it
                         was trained on (the class count must match).
  torchvision-deeplabv3  torchvision's deeplabv3_resnet50 / _resnet101 weights file (21 VOC
                         classes), through models.deeplab.from_torchvision.

DST holds what eval.py and predict.py need, as in a checkpoint our training writes: model
name and options (for semseg-pspnet the authors' network: deep-base backbone, every block
dilated, BatchNorm in every bin, align_corners=True), class count, names and palette, the
input normalisation (ImageNet mean and std), and the validation settings of the matching
training script under train/ (for semseg-pspnet the authors' test protocol), so that
`python eval.py DST` evaluates it as its authors did.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse
import dataclasses
import runpy

import torch

import datasets
from models import deeplab, psp_net
from models.input_norm import IMAGENET
from models.layers import resnet_depth
from utils.checkpoint import CheckpointError, make_checkpoint, provenance, save_checkpoint
from utils.engine import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("semseg-pspnet", "torchvision-deeplabv3")
# --dataset -> (our data set for evaluation, the training script whose settings the checkpoint takes).
# VOC: the 1449 val images are the same in `voc` and `voc_aug`; `voc` needs only VOCdevkit.
SEMSEG_DATASETS = {"voc": ("voc", "voc-psp-net"), "cityscapes": ("cityscapes", "cityscapes-psp-net"),
                   "ade20k": ("ade20k", "ade20k-psp-net")}


def read_source(path: Path) -> dict:
    """The other implementation's checkpoint, read without running code."""
    if not path.is_file():
        raise SystemExit(f"convert_checkpoint.py: {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a PyTorch file, or holding Python objects
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SystemExit(f"convert_checkpoint.py: cannot read {path} as a PyTorch checkpoint of tensors "
                         f"({type(err).__name__}: {first})") from None


def script_config(script: str) -> TrainConfig:
    """The TrainConfig of train/<script>/train.py, read without running its training."""
    return runpy.run_path(str(ROOT / "train" / script / "train.py"), run_name="convert_checkpoint")["cfg"]


def fill_counters(converted: dict, model: torch.nn.Module) -> dict:
    """Add BatchNorm's num_batches_tracked where the source has none (files of old PyTorch);
    eval-mode BatchNorm never reads it."""
    own = model.state_dict()
    return {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in converted},
            **converted}


def our_checkpoint(model_name: str, model_kwargs: dict, model: torch.nn.Module, dataset: str,
                   cfg: TrainConfig, source: dict) -> dict:
    data = datasets.dataset_class(dataset)
    return make_checkpoint(
        model=model_name, model_kwargs=model_kwargs, num_classes=len(data.classes),
        input_norm=IMAGENET.to_dict(),  # both sources: ImageNet mean / std on RGB (theirs: x 255 on 0..255)
        dataset=dataset, dataset_kwargs={}, classes=data.classes, palette=data.palette,
        state_dict=model.state_dict(), config=dataclasses.asdict(cfg), provenance=provenance(),
        converted_from=source)


def convert_semseg_pspnet(src: Path, dataset_flag: str) -> dict:
    raw = read_source(src)
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict):
        found = sorted(raw)[:5] if isinstance(raw, dict) else type(raw).__name__
        raise SystemExit(f"convert_checkpoint.py: {src} is not a checkpoint of hszhao/semseg's tool/train.py: "
                         f"expected a dict with 'state_dict' (and 'epoch'), found {found}")
    try:
        backbone = psp_net.semseg_backbone(raw["state_dict"])
        converted = psp_net.from_semseg(raw["state_dict"])
    except (KeyError, ValueError) as err:
        raise SystemExit(f"convert_checkpoint.py: {src}: {err}") from None
    dataset, script = SEMSEG_DATASETS[dataset_flag]
    classes = len(datasets.dataset_class(dataset).classes)
    found = converted["head.3.weight"].shape[0] if "head.3.weight" in converted else None
    if found != classes:
        raise SystemExit(f"convert_checkpoint.py: {src} classifies into {found} classes, but --dataset "
                         f"{dataset_flag} has {classes}; pass the data set it was trained on "
                         f"({', '.join(SEMSEG_DATASETS)})")
    options = {**psp_net.SEMSEG_OPTIONS, "aux": "aux_head.2.weight" in converted}
    model = psp_net.psp_net(classes, backbone=backbone, **options)
    try:
        model.load_state_dict(fill_counters(converted, model), strict=True)
    except RuntimeError as err:
        raise SystemExit(f"convert_checkpoint.py: {src} does not fit hszhao/semseg's PSPNet ({backbone}, "
                         f"{classes} classes): {str(err).splitlines()[0]}") from None
    cfg = dataclasses.replace(script_config(script), backbone=backbone, model_kwargs=dict(options),
                              pretrained=False, dataset=dataset, train_split="train", val_split="val")
    return our_checkpoint("psp_net", {**options, "backbone": backbone}, model, dataset, cfg,
                          {"source": "semseg-pspnet", "file": str(src), "epoch": raw.get("epoch")})


def convert_torchvision_deeplabv3(src: Path, dataset_flag: str | None) -> dict:
    if dataset_flag not in (None, "voc"):
        raise SystemExit(f"convert_checkpoint.py: torchvision's DeepLab v3 weights predict the 21 VOC classes; "
                         f"--dataset {dataset_flag} does not apply (leave it out, or pass voc)")
    state_dict = read_source(src)
    try:
        depth = resnet_depth(state_dict if isinstance(state_dict, dict) else {}, "backbone.layer3.")
        if depth not in (50, 101):
            raise ValueError(f"a ResNet-{depth}")
    except ValueError as err:
        raise SystemExit(f"convert_checkpoint.py: {src} is not torchvision's deeplabv3_resnet50 or _resnet101 "
                         f"state dict ({err})") from None
    arch = f"resnet{depth}"
    options = {"output_stride": 8, "aux": any(k.startswith("aux_classifier.") for k in state_dict)}
    model = deeplab.deeplab_v3(21, backbone=arch, **options)
    try:
        model.load_state_dict(deeplab.from_torchvision(state_dict), strict=True)
    except (KeyError, RuntimeError) as err:
        raise SystemExit(f"convert_checkpoint.py: {src} does not fit torchvision's deeplabv3_{arch}: "
                         f"{str(err).splitlines()[0]}") from None
    cfg = dataclasses.replace(script_config("voc-deeplab-v3"), backbone=arch, model_kwargs=dict(options),
                              pretrained=False, dataset="voc", train_split="train", val_split="val")
    return our_checkpoint("deeplab_v3", {**options, "backbone": arch}, model, "voc", cfg,
                          {"source": "torchvision-deeplabv3", "file": str(src)})


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=SOURCES, help="which implementation wrote SRC")
    parser.add_argument("src", type=Path, help="the released checkpoint")
    parser.add_argument("dst", type=Path, help="where to write ours")
    parser.add_argument("--dataset", choices=sorted(SEMSEG_DATASETS), default=None,
                        help="the data set SRC was trained on (required for semseg-pspnet)")
    args = parser.parse_args(argv)
    if args.source == "semseg-pspnet" and args.dataset is None:
        parser.error(f"semseg-pspnet needs --dataset, one of: {', '.join(SEMSEG_DATASETS)}")
    if args.dst.resolve() == args.src.resolve():
        parser.error("DST must differ from SRC")
    if args.source == "semseg-pspnet":
        state = convert_semseg_pspnet(args.src, args.dataset)
    else:
        state = convert_torchvision_deeplabv3(args.src, args.dataset)
    args.dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_checkpoint(state, args.dst)
    except CheckpointError as err:
        raise SystemExit(f"convert_checkpoint.py: {err}") from None
    backbone = state["model_kwargs"]["backbone"]
    print(f"wrote {args.dst}: {state['model']} ({backbone}, {state['num_classes']} classes of "
          f"{state['dataset']}); evaluate with: python eval.py {args.dst}")
    return args.dst


if __name__ == "__main__":
    main()
