"""RefineNet (4-cascaded, ResNet-101) on PASCAL VOC 2012 + SBD.

Source: Lin, Milan, Shen and Reid, "RefineNet: Multi-Path Refinement Networks
for High-Resolution Semantic Segmentation", CVPR 2017 (arXiv:1611.06612),
Sec. 3 (architecture) and 4 (experiments, PASCAL VOC 2012).

Paper setting, and how it is set here:
- Backbone: ResNet-101 from ImageNet weights, undilated (strides 4-32); one
  RefineNet block per stage, path widths 512 (coarsest) and 256 (others);
  no auxiliary loss.
- Augmentation: random scaling, random cropping and horizontal flipping (the
  paper's list); here scale 0.5-2, crops of 512 x 512, flip.
- Data: VOC 2012 with the SBD annotations (`voc_aug` train_aug), validation
  whole-image on VOC 2012 val. The paper's best VOC model was also trained
  on MS-COCO first; this script is the VOC stage only.
- Not stated in the paper, our choice: SGD with momentum 0.9, weight decay
  1e-4, learning rate 1e-3 with poly (0.9) (the head has no BatchNorm, so it
  takes a lower rate than the dilated-ResNet recipes), batch 16, 30000
  iterations.
Reported: n/a for this setting (the paper's best model, ResNet-152 with
MS-COCO, reaches 83.4 mIoU on VOC 2012 test; abstract).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import VOC, Recipe

recipe = Recipe(
    VOC,
    model="refine_net",
    backbone="resnet101",
    model_kwargs={"features": 256},
    iters=30000,
    val_every=3000,
    batch_size=16,
    lr=1e-3,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
