"""GCN (Global Convolutional Network, ResNet-152) on PASCAL VOC 2012 + SBD.

Source: Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters -- Improve Semantic
Segmentation by Global Convolutional Network", CVPR 2017 (arXiv:1703.02719),
Sec. 4 (experiments) and 4.2 (PASCAL VOC 2012).

Paper setting, and how it is set here:
- Backbone: ResNet-152 from ImageNet weights, undilated (stride 32); GCN
  blocks with k = 15 and boundary refinement on all four stages; no
  auxiliary loss.
- Optimiser: SGD with batch size 1, momentum 0.99, weight decay 5e-4.
- Augmentation: mean subtraction and horizontal flip only (no scaling);
  images padded to 512 x 512 (here: crop 512, which pads every VOC image
  with the ignore index).
- Data: VOC 2012 + SBD, 10582 training images (`voc_aug` train_aug),
  validated whole-image on VOC 2012 val. The paper's final VOC model was
  first trained on MS-COCO as well (three stages); this script is the
  SBD + VOC stage.
- Not stated in the paper, our choice: the learning rate (1e-4 with the poly
  schedule; with momentum 0.99 the effective step is that of 1e-2 at 0.9)
  and the iterations (100000 images, about 9.5 epochs).
Reported: 82.2 mIoU on VOC 2012 test (abstract; with the COCO stage).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import GCN, VOC, Recipe

recipe = Recipe(
    VOC, GCN,
    iters=100000,
    val_every=10000,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
