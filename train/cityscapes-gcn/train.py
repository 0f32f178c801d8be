"""GCN (Global Convolutional Network, ResNet-152) on Cityscapes (fine annotations).

Source: Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters -- Improve Semantic
Segmentation by Global Convolutional Network", CVPR 2017 (arXiv:1703.02719),
Sec. 4 (experiments) and 4.3 (Cityscapes).

Paper setting, and how it is set here:
- Backbone: ResNet-152 from ImageNet weights, undilated (stride 32); GCN
  blocks with k = 15 and boundary refinement; no auxiliary loss.
- Optimiser: SGD with batch size 1, momentum 0.99, weight decay 5e-4.
- Training on random 800 x 800 crops of the 1024 x 2048 images, horizontal
  flips, no scaling.
- Data: gtFine train (2975); validation on the 500 val images at full
  resolution, sliding window of 800 x 800 tiles, stride 533 (2/3).
- Not stated in the paper, our choice: the learning rate (1e-4, poly; see
  train/voc-gcn/train.py) and the iterations (60000 crops, about 20 epochs).
Reported: 76.9 mIoU on Cityscapes test (abstract).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CITYSCAPES, CITYSCAPES_SCHEDULE, GCN, Recipe, slide_crop

recipe = Recipe(
    CITYSCAPES, CITYSCAPES_SCHEDULE, GCN, slide_crop(800),
    iters=60000,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
