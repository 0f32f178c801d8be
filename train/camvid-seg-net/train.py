"""SegNet (VGG16 with BatchNorm) on CamVid, 11 classes.

Source: Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", IEEE TPAMI 2017
(arXiv:1511.00561), Sec. 3.2 (training) and 4.1 (road scenes, CamVid).

Paper setting, and how it is set here:
- Encoder: the 13 convolutions of VGG16 (here torchvision's vgg16_bn with
  ImageNet weights); decoder with max-unpooling by the encoder's indices;
  output stride 32 before unpooling; no auxiliary loss.
- Optimiser: SGD, fixed learning rate 0.1 (constant: poly_power 0),
  momentum 0.9, mini-batches of 12 images, shuffled each epoch.
- Whole 360 x 480 images, no augmentation: a 360 x 480 crop with no scaling
  and no flip is the whole frame, so every pixel is seen and nothing is
  padded (padding would enter BatchNorm's statistics).
- Data: the SegNet tutorial's CamVid (367 train, 101 val), 11 classes,
  validation whole-image on val.
- Loss weighted by median frequency balancing, as the paper did (Eigen and
  Fergus 2015): weights computed from the training masks (ignore pixels left
  out), cached and printed at start (utils/class_weights.py).
- Iterations: the paper trains until the training loss converges; 10000
  iterations (about 330 epochs) is our choice; weight decay 5e-4 ours too.
Reported: 60.1 mIoU on CamVid test at 360 x 480 (global accuracy 90.4, class average
71.2; Badrinarayanan et al., TPAMI 2017).

CPU recipe (400 steps, about 4 epochs, ran in 32 min 29 s with validation on an idle
2-core CPU, val mean_iu 0.2500; 800 fit in about an hour; the same flags for camvid-seg-net,
camvid-u-net and camvid-fcn8s-vgg, so the three rows compare):
    python train/camvid-seg-net/train.py --no-pretrained \
        --base-size 180 --val-base-size 180 --crop-size 180 --batch-size 4 \
        --optimizer adamw --lr 5e-4 --weight-decay 1e-4 --poly-power 0.9 --warmup-iters 50 \
        --iters 400 --val-every 200 --workers 1 --device cpu
  half resolution (180 x 240 frames, random 180 x 180 crops, batch 4),
  AdamW (robust from scratch in few iterations), median frequency weights as
  on the GPU; use --pretrained instead when vgg16_bn-6c64b313.pth is in
  SEG_WEIGHTS. Metrics at the labels' full 360 x 480 resolution.
Longer CPU run (docs/camvid.md): 900 steps with --amp --channels-last,
--scale-max 1.5 --hflip, one thread beside the FCN-8s run: val mean_iu 0.2967 in 42 min.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CAMVID, SEGNET_CAMVID, Recipe

recipe = Recipe(
    CAMVID, SEGNET_CAMVID,
    model="seg_net",
    backbone="vgg16_bn",
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
