"""FCN-8s (VGG16) on CamVid, 11 classes: a comparison with SegNet on SegNet's data setting.

Architecture: Long, Shelhamer and Darrell, "Fully Convolutional Networks for
Semantic Segmentation", CVPR 2015 (arXiv:1411.4038), FCN-8s on torchvision's
VGG16 with ImageNet weights, trained in one stage ("at-once", which the
journal version, TPAMI 2017, Sec. 4.1, finds as good as the staged recipe),
so with the authors' at-once skip scaling (pool4 x 0.01, pool3 x 0.0001:
`at_once=True`, models/fcn.py).

No paper trains this pair on CamVid. Defaults (the GPU recipe): SegNet's data
setting (train/camvid-seg-net/train.py: whole 360 x 480 images as 360 x 480
crops, no augmentation, median frequency class balancing, batch 12, 10000
iterations, weight decay 5e-4) with FCN's optimiser: SGD, momentum 0.9, a
constant learning rate of 1e-4 (SegNet's 0.1 diverges on VGG16 without
BatchNorm). Validation whole-image on val.

CPU recipe (400 steps, about 4 epochs, ran in 37 min 26 s with validation on an idle
2-core CPU, val mean_iu 0.3139 before the fidelity fixes, without at_once; the same flags as camvid-seg-net and
camvid-u-net, less the width, which VGG16 fixes):
    python train/camvid-fcn8s-vgg/train.py --no-pretrained \\
        --base-size 180 --val-base-size 180 --crop-size 180 --batch-size 4 \\
        --optimizer adamw --lr 5e-4 --weight-decay 1e-4 --poly-power 0.9 --warmup-iters 50 \\
        --iters 400 --val-every 200 --workers 1 --device cpu
  (use --pretrained instead of --no-pretrained when vgg16-397923af.pth is in
  SEG_WEIGHTS: the paper's setting, and much better in an hour; then lower
  --lr to 1e-4). Metrics at the labels' full 360 x 480 resolution.
Longer CPU run (docs/camvid.md): 360 steps with --amp --channels-last,
--scale-max 1.5 --hflip, one thread beside the SegNet run: val mean_iu 0.2392 in 42 min.
Reported: n/a.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CAMVID, SEGNET_CAMVID, Recipe

recipe = Recipe(
    CAMVID, SEGNET_CAMVID,
    model="fcn8s",
    backbone="vgg16",
    model_kwargs={"at_once": True},
    lr=1e-4,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
