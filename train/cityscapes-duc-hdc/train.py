"""DUC-HDC (ResNet-101) on Cityscapes (fine annotations).

Source: Wang, Chen, Yuan, Liu, Huang, Hou and Cottrell, "Understanding
Convolution for Semantic Segmentation", WACV 2018 (arXiv:1702.08502), Sec. 3
(DUC, HDC) and 4.1 (Cityscapes); code github.com/TuSimple/TuSimple-DUC.

Architecture as in the paper: ResNet-101 from ImageNet weights, output
stride 8, hybrid dilated convolution in res4 (rates 1, 2, 5, 9 repeated) and
res5 (5, 9, 17), dense upsampling convolution to full resolution; no
auxiliary loss (see models/duc.py for the choices it makes).

Training hyperparameters: we could not check the paper's exact optimiser
values, so this script uses the common Cityscapes schedule of dilated
ResNets (as cityscapes-psp-net, with 8 images per batch): SGD, momentum 0.9,
weight decay 1e-4, learning rate 0.01 with poly (0.9), batch 8, random
scale 0.5-2, flip, crops of 768 x 768, 80000 iterations. Validation on the
500 val images at full resolution, sliding window 768 / stride 512.
Reported: 80.1 mIoU on Cityscapes test (abstract; the paper's best system,
which also used the coarse annotations); no figure for this exact setting.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CITYSCAPES, CITYSCAPES_SCHEDULE, Recipe

recipe = Recipe(
    CITYSCAPES, CITYSCAPES_SCHEDULE,
    model="duc_hdc",
    backbone="resnet101",
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
