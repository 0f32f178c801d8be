"""DeepLab v3+ (ResNet-101) on Cityscapes (fine annotations).

Source: Chen, Zhu, Papandreou, Schroff and Adam, "Encoder-Decoder with Atrous
Separable Convolution for Semantic Image Segmentation", ECCV 2018
(arXiv:1802.02611), Sec. 4 (training protocol as DeepLab v3) and 4.4
(Cityscapes); crop size 769 x 769 as DeepLab v3's Cityscapes experiments
(arXiv:1706.05587, Sec. 4.4) and the authors' TensorFlow code.

Paper setting, and how it is set here:
- Encoder: ResNet-101 from ImageNet weights, output stride 16, ASPP rates
  6/12/18 with image pooling; decoder fusing the stride-4 features (48
  channels) with two 3x3 convolutions of 256; no auxiliary loss.
- Optimiser: SGD, momentum 0.9, poly (power 0.9) from 0.01, weight decay
  1e-4 (the authors' code), batch size 8, 90000 iterations (our choice of
  length, about 240 epochs of the 2975 images).
- Augmentation: random scale 0.5-2, random flip, crops of 769 x 769.
- Data: gtFine train; validation on the 500 val images at full resolution,
  sliding window of 769 x 769 tiles, stride 513 (2/3).
Reported: n/a for ResNet-101 (the paper's Cityscapes results use Xception
backbones).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import CITYSCAPES, CITYSCAPES_SCHEDULE, Recipe, slide_crop

recipe = Recipe(
    CITYSCAPES, CITYSCAPES_SCHEDULE, slide_crop(769),
    model="deeplab_v3_plus",
    backbone="resnet101",
    model_kwargs={"output_stride": 16},
    iters=90000,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
