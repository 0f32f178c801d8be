"""PSPNet (ResNet-50) on ADE20K (SceneParse150).

Source: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Sec. 5.1 (implementation details) and 5.2 (ImageNet scene
parsing challenge 2016, ADE20K); crop size 473 x 473 from the authors'
released ADE20K model (github.com/hszhao/PSPNet).

Paper setting, and how it is set here:
- Backbone: ResNet-50 from ImageNet weights (the backbone of the paper's
  ADE20K ablations), dilated to output stride 8; bins 1, 2, 3, 6; auxiliary
  loss weight 0.4.
- Optimiser: SGD, momentum 0.9, weight decay 1e-4, base learning rate 0.01,
  poly (power 0.9), batch size 16, 150K iterations for ADE20K.
- Augmentation: random mirror, random resize 0.5-2, crops of 473 x 473
  (rotation and blur are not implemented by the engine).
- Data: the 20210 training images; validation whole-image on the 2000
  validation images, at their original resolution.
Reported: the paper's ResNet-50 ablations are on ADE20K val (see its Tables
2-4); we do not quote a figure here.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import TrainConfig, run

cfg = TrainConfig(
    model="psp_net",
    backbone="resnet50",
    model_kwargs={"output_stride": 8, "aux": True},
    pretrained=True,
    dataset="ade20k",
    train_split="train",
    val_split="val",
    iters=150000,
    batch_size=16,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
    poly_power=0.9,
    aux_weight=0.4,
    crop_size=473,
    scale_min=0.5,
    scale_max=2.0,
    hflip=True,
    val_every=10000,
    val_mode="whole",
    val_batch_size=1,
)

if __name__ == "__main__":
    run(cfg)
