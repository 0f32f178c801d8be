"""FCN-32s (VGG16) on PASCAL VOC 2012 + SBD: the first stage of the FCN recipe.

Source: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (arXiv:1411.4038), Sec. 4.1-4.3 and Table 2.

Paper setting, and how it is set here:
- Backbone: the paper's VGG16, Caffe's ImageNet model (`vgg16_caffe`: the
  file vgg16-00b39a1b.pth in SEG_WEIGHTS), which expects BGR pixels in 0..255
  minus the means 103.939 / 116.779 / 123.68; the checkpoint records that
  normalisation, so eval.py and predict.py apply it. `--backbone vgg16` uses
  torchvision's VGG16 (RGB, ImageNet mean and std) instead.
- fc6/fc7 kept as convolutions (4096 channels) with Caffe's element-wise
  dropout, output stride 32; the score layer starts at zero.
- Optimiser: SGD, momentum 0.9, weight decay 5e-4, fixed learning rate 1e-4
  for FCN-VGG16 (constant: poly_power 0), minibatches of 20 images.
- Whole images, no augmentation (the paper found mirroring and jittering
  gave no noticeable gain): crop 512 with no scaling and no flip pads every
  VOC image (at most 500 x 500) with the ignore index, so the whole image is
  seen.
- Data: the paper trained on SBD train (8498 images) and validated on a
  736-image subset of VOC 2011 val; here `voc_aug` train_aug (10582 images:
  SBD train + val + VOC 2012 train, minus VOC 2012 val) and VOC 2012 val
  (1449), the split every later paper uses.
- Iterations: the paper reports wall-clock time (three days on one GPU for
  FCN-32s), not iterations; 20000 iterations of 20 images (about 38 epochs
  of train_aug) is our choice.

Deviations: the engine gives biases the same learning rate as weights (the
paper doubled it) and averages the loss over pixels.
Reported: 59.4 mean IU on the VOC 2011 val subset (Table 2).
Next stage: train/voc-fcn16s-vgg/train.py --init-from <this run>/best.pth.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import FCN_VOC, VOC, Recipe

recipe = Recipe(
    VOC, FCN_VOC,
    model="fcn32s",
    lr=1e-4,
    iters=20000,
    val_every=2000,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
