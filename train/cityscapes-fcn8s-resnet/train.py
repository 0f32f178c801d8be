"""FCN-8s on a ResNet-101 backbone, Cityscapes (fine annotations).

Architecture: Long, Shelhamer and Darrell, "Fully Convolutional Networks for
Semantic Segmentation", CVPR 2015 (arXiv:1411.4038): scores of the stride-32,
16 and 8 features fused by learned 2x upsamplings. The FCN paper converted
several classifiers (AlexNet, VGG, GoogLeNet); here the classifier is an
undilated ResNet-101 from ImageNet weights, whose last stage plays fc7's
role (see models/fcn.py).

No paper trains this pair, so the hyperparameters are the common Cityscapes
schedule of the dilated-ResNet papers (PSPNet, DeepLab v3), trained in one go
rather than in FCN's stages, hence with the authors' at-once skip scaling
(`at_once=True`, models/fcn.py): SGD, momentum 0.9, weight decay 1e-4, learning
rate 0.01 with poly (0.9), batch 8, random scale 0.5-2, flip, crops of
768 x 768, 80000 iterations. Validation on the 500 val images at full
resolution, sliding window 768 / stride 512.
Reported: n/a (Cordts et al., CVPR 2016, report FCN-8s on VGG16 for
Cityscapes; not this backbone).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CITYSCAPES, CITYSCAPES_SCHEDULE, Recipe

recipe = Recipe(
    CITYSCAPES, CITYSCAPES_SCHEDULE,
    model="fcn8s",
    backbone="resnet101",
    model_kwargs={"at_once": True},
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
