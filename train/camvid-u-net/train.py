"""U-Net on CamVid, 11 classes: a comparison with SegNet on SegNet's recipe.

Architecture: Ronneberger, Fischer and Brox, "U-Net", MICCAI 2015
(arXiv:1505.04597), with padded convolutions and BatchNorm (models/u_net.py),
trained from scratch as in the paper (no ImageNet encoder).

No paper trains U-Net on CamVid. Defaults (the GPU recipe) are those of
train/camvid-seg-net/train.py, so that the two rows compare architectures, not
recipes: whole 360 x 480 images (a 360 x 480 crop, so nothing is padded), no
augmentation, median frequency class balancing (computed from the training
masks, cached and printed), SGD, constant lr 0.1, momentum 0.9, weight decay
5e-4, batch 12, 10000 iterations; U-Net at the paper's width 64. Validation
whole-image on val.

CPU recipe (400 steps, about 4 epochs, ran in 3 min 49 s with validation on an idle
2-core CPU, val mean_iu 0.3526; the same flags for camvid-seg-net,
camvid-u-net and camvid-fcn8s-vgg, so the three rows compare):
    python train/camvid-u-net/train.py --model-kwargs '{"width": 16}' \\
        --base-size 180 --val-base-size 180 --crop-size 180 --batch-size 4 \\
        --optimizer adamw --lr 5e-4 --weight-decay 1e-4 --poly-power 0.9 --warmup-iters 50 \\
        --iters 400 --val-every 200 --workers 1 --device cpu
  half resolution (180 x 240 frames, random 180 x 180 crops, batch 4),
  U-Net width 16, AdamW (robust from scratch in few iterations), median
  frequency weights as on the GPU. Metrics are computed at the labels' full
  360 x 480 resolution (the logits are upsampled).
Converged CPU recipe (val mean_iu 0.5721 in 1 h 13 min on 2 cores, no test-time
augmentation): three-quarter resolution (--base-size 270, 270 x 270 crops), batch 8,
3600 steps (78 epochs), AdamW 1e-3, --amp --channels-last, which needs a CPU with
native bf16 (AMX or AVX512-BF16; without it leave --amp off). The command and the
half-resolution runs it replaced are in docs/camvid.md.
Reported: n/a.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CAMVID, SEGNET_CAMVID, U_NET, Recipe

recipe = Recipe(
    CAMVID, SEGNET_CAMVID, U_NET,
    model_kwargs={"width": 64},
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
