"""FCN-8s on a DenseNet-121 backbone, CamVid, 11 classes.

Architecture: Long, Shelhamer and Darrell, "Fully Convolutional Networks for
Semantic Segmentation", CVPR 2015 (arXiv:1411.4038), on torchvision's
DenseNet-121 (Huang et al., CVPR 2017) with ImageNet weights, cut after each
dense block at strides 4, 8, 16, 32 (see models/backbones.py); no
auxiliary loss. This is not the FC-DenseNet ("Tiramisu", Jegou et al. 2017),
which builds its own dense decoder and trains from scratch.

No paper trains this pair, so the hyperparameters are ours, in the spirit of
the dilated-ResNet recipes on a small data set: SGD, momentum 0.9, weight
decay 1e-4, learning rate 0.01 with poly (0.9), batch 8, random scale 1-2,
flip, crops of 352 x 480 (multiples of 32 that fit the 360 x 480 frames at
every scale, so no crop is padded and padding never enters BatchNorm's
statistics), 10000 iterations (about 220 epochs of the 367 training images).
Trained in one stage with the authors' at-once skip scaling (`at_once=True`,
models/fcn.py). Validation whole-image (360 x 480) on val.
Reported: n/a.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CAMVID, Recipe

recipe = Recipe(
    CAMVID,
    model="fcn8s",
    backbone="densenet121",
    model_kwargs={"at_once": True},
    crop_size=(352, 480),
    scale_min=1.0,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
