"""PSPNet (ResNet-101) on Cityscapes (fine annotations).

Source: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Sec. 5.1 (implementation details) and 5.4 (Cityscapes);
crop size 713 x 713 from the authors' released Cityscapes model
(github.com/hszhao/PSPNet).

Paper setting, and how it is set here:
- Backbone: ResNet-101 from ImageNet weights, dilated to output stride 8;
  bins 1, 2, 3, 6; auxiliary loss weight 0.4.
- Optimiser: SGD, momentum 0.9, weight decay 1e-4, base learning rate 0.01,
  poly (power 0.9), batch size 16, 90K iterations for Cityscapes.
- Augmentation: random mirror, random resize 0.5-2, crops of 713 x 713
  (rotation and blur are not implemented by the engine).
- Data: gtFine train (2975); validation on the 500 val images at their full
  1024 x 2048 resolution, sliding window of 713 x 713 tiles with stride 476
  (2/3 of the tile), as the authors evaluate.
Reported: 78.4 mIoU on Cityscapes test trained on fine data only (80.2 with
the coarse data added).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import TrainConfig, run

cfg = TrainConfig(
    model="psp_net",
    backbone="resnet101",
    model_kwargs={"output_stride": 8, "aux": True},
    pretrained=True,
    dataset="cityscapes",
    train_split="train",
    val_split="val",
    iters=90000,
    batch_size=16,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
    poly_power=0.9,
    aux_weight=0.4,
    crop_size=713,
    scale_min=0.5,
    scale_max=2.0,
    hflip=True,
    val_every=10000,
    val_mode="slide",
    val_tile=713,
    val_stride=476,
    val_batch_size=1,
)

if __name__ == "__main__":
    run(cfg)
