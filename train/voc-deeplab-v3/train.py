"""DeepLab v3 (ResNet-101) on PASCAL VOC 2012 + SBD.

Source: Chen, Papandreou, Schroff and Adam, "Rethinking Atrous Convolution for
Semantic Image Segmentation", arXiv:1706.05587 (2017), Sec. 4 (training
protocol) and 4.3 (ASPP results on VOC 2012 val).

Paper setting, and how it is set here:
- Backbone: ResNet-101 from ImageNet weights, output stride 16 in training,
  multi-grid (1, 2, 4) in block4 (rates 2, 4, 8; Sec. 4.1, Table 7);
  ASPP with a 1x1 branch, rates 6/12/18 and image-level pooling, BatchNorm;
  no auxiliary loss.
- Optimiser: poly learning rate (power 0.9) from 0.007, batch size 16, 30K
  iterations on train_aug; SGD momentum 0.9; weight decay 1e-4 (the value
  of the authors' TensorFlow code; the paper does not state it).
- Augmentation: random scale 0.5-2, random left-right flip, crops of
  513 x 513.
- Data: `voc_aug` train_aug (10582), validation whole-image on VOC 2012 val.
- Not done here: the BatchNorm decay of 0.9997, and
  its second stage (BatchNorm frozen, output stride 8, 30K more iterations on
  VOC trainval at 0.001). To evaluate at output stride 8 as the paper does,
  train with --model-kwargs '{"output_stride": 8, "multi_grid": [1, 2, 4]}'
  (ASPP rates double to 12/24/36, block4's to 4/8/16).
Reported: 77.21 mIoU on VOC 2012 val (output stride 16, single scale, with
multi-grid, Sec. 4.3).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import DEEPLAB_V3, VOC, Recipe

recipe = Recipe(
    VOC, DEEPLAB_V3,
    model_kwargs={"output_stride": 16, "multi_grid": (1, 2, 4)},
    iters=30000,
    val_every=3000,
    lr=0.007,
    crop_size=513,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
