"""FCN-8s (VGG16) on PASCAL VOC 2012 + SBD: the last stage of the FCN recipe.

Source: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (arXiv:1411.4038), Sec. 4.2, Tables 2 and 3.

Staged recipe (the paper's): FCN-8s starts from the trained FCN-16s, adding a
zero-initialised stride-8 skip score and a second bilinear-initialised 2x
upsampling; every other tensor comes from the checkpoint:

    python train/voc-fcn32s-vgg/train.py
    python train/voc-fcn16s-vgg/train.py --init-from runs/voc-fcn32s-vgg/best.pth
    python train/voc-fcn8s-vgg/train.py --init-from runs/voc-fcn16s-vgg/best.pth

Paper setting, and how it is set here: as FCN-16s (SGD, momentum 0.9, weight
decay 5e-4, minibatches of 20 whole images, no augmentation, constant
learning rate 100 times below FCN-32s's: 1e-6, which assumes --init-from;
from ImageNet weights in one go pass --lr 1e-4 --model-kwargs '{"at_once": true}',
the authors' voc-fcn8s-atonce: pool4 x 0.01 and pool3 x 0.0001 before their
score layers, models/fcn.py).
Backbone: the paper's VGG16, Caffe's ImageNet model (`vgg16_caffe`: the
file vgg16-00b39a1b.pth in SEG_WEIGHTS), which expects BGR pixels in 0..255
minus the means 103.939 / 116.779 / 123.68; the checkpoint records that
normalisation, so eval.py and predict.py apply it. `--backbone vgg16` uses
torchvision's VGG16 (RGB, ImageNet mean and std) instead. Data: `voc_aug` train_aug /
VOC 2012 val (the paper: SBD train / a VOC 2011 val subset). Iterations:
8000 iterations of 20 images, our choice (the paper reports about one day of
training per stage).
Reported: 62.7 mean IU on the VOC 2011 val subset (Table 2); 62.7 on VOC 2011
test and 62.2 on VOC 2012 test (Table 3).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import FCN_LATER_STAGE, FCN_VOC, VOC, Recipe

recipe = Recipe(
    VOC, FCN_VOC, FCN_LATER_STAGE,
    model="fcn8s",
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
