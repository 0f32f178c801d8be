"""PSPNet-101 on Cityscapes (fine annotations), as its authors train it (hszhao/semseg).

Source: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Sec. 5.1 and 5.4; every value below is that of the authors'
released PyTorch system, hszhao/semseg (config/cityscapes/cityscapes_pspnet101.yaml,
model/pspnet.py, tool/train.py, util/transform.py), whose released models this
repository converts (tools/convert_checkpoint.py semseg-pspnet).

Setting, and how it is set here:
- Network: their deep-base ResNet-101 (ImageNet weights from their file
  resnet101_v2.pth in SEG_WEIGHTS), every block of layer3 / layer4 dilated
  (2 / 4), BatchNorm in every pyramid bin (training needs batches of 2 or
  more), align_corners=True resizing, auxiliary loss weight 0.4.
- Optimiser: SGD, momentum 0.9, weight decay 1e-4, base LR 0.01, 10x for the
  new layers (--head-lr-mult 10), poly (power 0.9), batch size 16, 200 epochs
  of gtFine train: 2975 // 16 = 185 iterations each (the last partial batch
  dropped, as their loader does), 37000 iterations.
- Augmentation, in their order: random scale 0.5-2, rotation within +-10
  degrees (half of the images), Gaussian blur (half of the images), mirror,
  713 x 713 crops (8k + 1) padded with the mean colour.
- Validation: the 500 val images at full 1024 x 2048 with their test protocol
  (--val-protocol semseg): longer side 2048, 713 crops at stride 476, flipped,
  probabilities averaged.
Reported: 78.63 mIoU on Cityscapes val, single scale, for the authors' own run
of this recipe (hszhao/semseg README); 78.4 on Cityscapes test in the paper.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CITYSCAPES, PSPNET, Recipe

recipe = Recipe(
    CITYSCAPES, PSPNET,
    backbone="resnet101_deep",
    iters=200 * (2975 // 16),
    val_every=20 * (2975 // 16),
    crop_size=713,
    val_tile=713,
    val_long_side=2048,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
