"""FCN-16s (VGG16) on PASCAL VOC 2012 + SBD: the second stage of the FCN recipe.

Source: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (arXiv:1411.4038), Sec. 4.2 ("Combining what and
where") and Table 2.

Staged recipe (the paper's): FCN-16s starts from the trained FCN-32s, whose
every tensor (VGG16, fc6/fc7, score layer) it shares; only the stride-16 skip
score (zero-initialised, so training starts from FCN-32s's predictions) and
the 2x upsampling (initialised to bilinear) are new. Then FCN-8s starts from
FCN-16s the same way:

    python train/voc-fcn32s-vgg/train.py
    python train/voc-fcn16s-vgg/train.py --init-from runs/voc-fcn32s-vgg/best.pth
    python train/voc-fcn8s-vgg/train.py --init-from runs/voc-fcn16s-vgg/best.pth

(`--init-from` copies every tensor whose name and shape match and prints how
many it copied; `runs/` is SEG_RUNS.)

Paper setting, and how it is set here: as FCN-32s (SGD, momentum 0.9, weight
decay 5e-4, minibatches of 20 whole images, no augmentation, constant
learning rate), with the learning rate decreased by a factor of 100 (Sec.
4.2): 1e-6. That rate assumes --init-from; to train FCN-16s in one go from
ImageNet weights instead, pass --lr 1e-4 --model-kwargs '{"at_once": true}'
(the authors' at-once scaling of pool4 by 0.01, models/fcn.py).
Backbone: the paper's VGG16, Caffe's ImageNet model (`vgg16_caffe`: the
file vgg16-00b39a1b.pth in SEG_WEIGHTS), which expects BGR pixels in 0..255
minus the means 103.939 / 116.779 / 123.68; the checkpoint records that
normalisation, so eval.py and predict.py apply it. `--backbone vgg16` uses
torchvision's VGG16 (RGB, ImageNet mean and std) instead. Data: `voc_aug` train_aug / VOC
2012 val (the paper: SBD train / a VOC 2011 val subset). Iterations: the
paper reports about one day of training per stage, not iterations; 8000
iterations of 20 images is our choice.
Reported: 62.4 mean IU on the VOC 2011 val subset (Table 2).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import FCN_LATER_STAGE, FCN_VOC, VOC, Recipe

recipe = Recipe(
    VOC, FCN_VOC, FCN_LATER_STAGE,
    model="fcn16s",
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
