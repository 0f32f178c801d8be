"""U-Net on DRIVE retinal vessels, read from the archive's own layout by the `folder` data set.

Data: Staal et al., "Ridge-based vessel segmentation in color images of the retina",
IEEE TMI 2004. 40 photographs of 565 x 584, split by the archive into training/ (21..40)
and test/ (01..20); vessels drawn by hand (1st_manual), one field-of-view (FOV) mask per
image. Every figure is measured inside the FOV, as papers report DRIVE: the declaration
below makes the FOV masks the data set's regions of interest, so pixels outside them are
ignored (255) in the loss and in every metric. No conversion step, no copied files.

Architecture: Ronneberger, Fischer and Brox, "U-Net", MICCAI 2015 (arXiv:1505.04597),
padded convolutions with BatchNorm (models/u_net.py), trained from scratch.

Split: the `folder` data set's fixed rule (a stem whose CRC-32 is divisible by 5 is val)
holds out training images 24, 25, 35 and 38 as `val`; the 16 others are `train`. The rule
depends on the file names alone, so every machine holds out the same four. The reported
figures are those of the final checkpoint (last.pth) on these four: nothing (no iteration,
no threshold) is chosen on them.

CPU recipe (the defaults), measured to fit an hour on a 2-core CPU: 49 min 19 s on a 2-core
AMD EPYC with AVX2 and no GPU, validations included (docs/drive.md):
- U-Net of width 16, depth 4, channels_last (1.2 times the images/s of the default memory
  format on that CPU: benchmarks/train_speed.py); random 192 x 192 crops, batch 8, 3600 steps.
- Augmentation for how fundus photographs vary: scale 0.75..1.25, rotation up to 20 degrees
  (half of the crops), a small elastic deformation (std 4 px on a 3 x 3 grid), horizontal and
  vertical flips, brightness and contrast +-20 %, gamma 1/1.3..1.3. Each is applied to a
  288 x 288 window (precrop) before the 192 x 192 crop, not to the whole photograph.
- Cross-entropy plus soft Dice (`ce+dice`): with cross-entropy alone the argmax of thin vessels
  leaned to precision over sensitivity (a GPU run: sensitivity 0.71, precision 0.87), and Dice
  is a soft F1 of each class. AdamW lr 1e-3, weight decay 1e-4, 100 warm-up steps, poly decay.
- Validation: whole images (the U-Net is fully convolutional; 565 x 584 at full resolution),
  every 500 steps, with the two-class metrics (F1, AUC, ...) inside the FOV.
- Decision threshold 0.4 on the vessel probability (`val_threshold`, which eval.py and
  predict.py take from the checkpoint): the F1-best threshold on the 16 *training* images of
  the measured run (`eval.py last.pth --split train` printed 0.403; F1 0.8134 there against
  0.8066 at 0.5), rounded. The validation images played no part in it. The argmax still leaned
  to precision with `ce+dice` (validation: sensitivity 0.73, precision 0.87 at 0.5).

GPU recipe (the paper-scale setting: full width 64, larger crops, longer; not measured here):
    python train/drive-u-net/train.py --model-kwargs '{"width": 64}' --crop-size 256 --precrop 384 \\
        --batch-size 16 --iters 20000 --val-every 1000 --amp --workers 8

Scoring the official test half (test/images/01_test.tif ... with test/mask/01_test_mask.gif):
see the README's DRIVE section: train on all 20 training images with `--train-split all`,
then `eval.py` / `predict.py` on test/ with the test FOV masks.
Reported (DRIVE test half, inside the FOV): orobix/retina-unet, a U-Net on 48 x 48 patches,
F1 0.8161, AUC 0.9790, accuracy 0.9560, sensitivity 0.7671, specificity 0.9835.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import DRIVE, U_NET, Recipe

recipe = Recipe(
    DRIVE, U_NET,
    model_kwargs={"width": 16},
    iters=3600,
    loss="ce+dice",
    optimizer="adamw",
    lr=1e-3,
    warmup_iters=100,
    crop_size=192,
    precrop=288,
    scale_min=0.75,
    scale_max=1.25,
    rotate=20.0,
    elastic_std=4.0,
    vflip=True,
    brightness=0.2,
    contrast=0.2,
    gamma=0.3,
    workers=1,
    channels_last=True,
    val_threshold=0.4,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
