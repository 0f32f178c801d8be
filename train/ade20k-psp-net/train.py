"""PSPNet-50 on ADE20K (SceneParse150), as its authors train it (hszhao/semseg).

Source: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Sec. 5.1 and 5.2; every value below is that of the authors'
released PyTorch system, hszhao/semseg (config/ade20k/ade20k_pspnet50.yaml,
model/pspnet.py, tool/train.py, util/transform.py), whose released models this
repository converts (tools/convert_checkpoint.py semseg-pspnet).

Setting, and how it is set here:
- Network: their deep-base ResNet-50 (ImageNet weights from their file
  resnet50_v2.pth in SEG_WEIGHTS; --backbone resnet101_deep for PSPNet-101),
  every block of layer3 / layer4 dilated (2 / 4), BatchNorm in every pyramid
  bin (training needs batches of 2 or more), align_corners=True resizing,
  auxiliary loss weight 0.4.
- Optimiser: SGD, momentum 0.9, weight decay 1e-4, base LR 0.01, 10x for the
  new layers (--head-lr-mult 10), poly (power 0.9), batch size 16, 100 epochs
  of the 20210 training images: 20210 // 16 = 1263 iterations each (the last
  partial batch dropped, as their loader does), 126300 iterations.
- Augmentation, in their order: random scale 0.5-2, rotation within +-10
  degrees (half of the images), Gaussian blur (half of the images), mirror,
  473 x 473 crops (8k + 1) padded with the mean colour.
- Validation: the 2000 validation images with their test protocol
  (--val-protocol semseg): longer side 512, 473 crops at stride 316, flipped,
  probabilities averaged; metrics at the labels' original resolution.
Reported: 41.89 mIoU on ADE20K val, single scale, for the authors' own run of
this recipe (43.10 with ResNet-101; hszhao/semseg README).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import ADE20K, PSPNET, Recipe

recipe = Recipe(
    ADE20K, PSPNET,
    backbone="resnet50_deep",
    iters=100 * (20210 // 16),
    val_every=10 * (20210 // 16),
    crop_size=473,
    val_tile=473,
    val_long_side=512,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
