"""PSPNet (ResNet-101) on PASCAL VOC 2012 + SBD.

Source: Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Sec. 5.1 (implementation details) and 5.3 (PASCAL VOC
2012); crop size from the authors' released models (github.com/hszhao/PSPNet:
473 x 473 for VOC and ADE20K, 713 x 713 for Cityscapes).

Paper setting, and how it is set here:
- Backbone: ResNet-101 from ImageNet weights, dilated to output stride 8;
  pyramid pooling bins 1, 2, 3, 6; auxiliary loss on the stride-16 stage
  (res4b22) with weight 0.4.
- Optimiser: SGD, momentum 0.9, weight decay 1e-4, base learning rate 0.01
  with the poly policy (power 0.9), batch size 16, 30K iterations for VOC.
- Augmentation: random mirror and random resize between 0.5 and 2; crops of
  473 x 473. The paper's random rotation (-10 to 10 degrees) and Gaussian
  blur are not implemented by the engine.
- Data: `voc_aug` train_aug (10582 images, the paper's augmented training
  set), validated whole-image on VOC 2012 val (1449).
Reported: 82.6 mIoU on VOC 2012 test without MS-COCO pre-training (85.4 with
it), with multi-scale testing.
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
    dataset="voc_aug",
    train_split="train_aug",
    val_split="val",
    iters=30000,
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
    val_every=3000,
    val_mode="whole",
    val_batch_size=1,
)

if __name__ == "__main__":
    run(cfg)
