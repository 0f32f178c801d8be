"""PSPNet-101 on PASCAL VOC 2012 + SBD, as its authors train it (hszhao/semseg).

Source: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Sec. 5.1 and 5.3; every value below is that of the authors'
released PyTorch system, hszhao/semseg (config/voc2012/voc2012_pspnet101.yaml,
model/pspnet.py, tool/train.py, util/transform.py), whose released models this
repository converts (tools/convert_checkpoint.py semseg-pspnet).

Setting, and how it is set here:
- Network: their deep-base ResNet-101 (three 3x3 stem convolutions, ImageNet
  weights from their file resnet101_v2.pth in SEG_WEIGHTS), every block of
  layer3 / layer4 dilated (2 / 4), BatchNorm in every pyramid bin (training
  needs batches of 2 or more), align_corners=True resizing, auxiliary loss on
  layer3 with weight 0.4.
- Optimiser: SGD, momentum 0.9, weight decay 1e-4, base LR 0.01 for the
  backbone and 10x (--head-lr-mult 10) for the pyramid, classifier and
  auxiliary head, poly (power 0.9), batch size 16, 50 epochs of train_aug:
  10582 // 16 = 661 iterations each (their loader drops the last partial
  batch), 33050 iterations.
- Augmentation, in their order: random scale 0.5-2, rotation within +-10
  degrees (half of the images), Gaussian blur (half of the images), mirror,
  473 x 473 crops (8k + 1) padded with the mean colour.
- Validation: their test protocol (--val-protocol semseg): longer side resized
  to 512, 473 crops at stride 316, flipped, probabilities averaged.
Reported: 79.07 mIoU on VOC 2012 val, single scale, for the authors' own run
of this recipe (hszhao/semseg README); 82.6 on VOC 2012 test in the paper.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import PSPNET, VOC, Recipe

recipe = Recipe(
    VOC, PSPNET,
    backbone="resnet101_deep",
    iters=50 * (10582 // 16),
    val_every=5 * (10582 // 16),
    crop_size=473,
    val_tile=473,
    val_long_side=512,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
