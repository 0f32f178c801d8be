"""DeepLab v3 (ResNet-101, output stride 8) on ADE20K (SceneParse150).

Architecture: Chen, Papandreou, Schroff and Adam, "Rethinking Atrous
Convolution for Semantic Image Segmentation", arXiv:1706.05587 (2017): ResNet-101
from ImageNet weights dilated to output stride 8, ASPP rates 12/24/36 with
image pooling and BatchNorm, plus the auxiliary FCN head on layer3 (weight
0.4) that PSPNet introduced for ADE20K.

The DeepLab v3 paper has no ADE20K experiment, so the schedule is PSPNet's
ADE20K protocol (Zhao et al., CVPR 2017, Sec. 5.1): SGD, momentum 0.9,
weight decay 1e-4, learning rate 0.01 with poly (0.9), batch 16, 150000
iterations, random scale 0.5-2 and flip; crops of 512 x 512.
Validation: each val image's shorter side is resized to 512 for the model
(`val_base_size`) and the logits are resized back, so mIoU is measured on
the original-resolution labels, whole image.
Reported: n/a (no ADE20K figure in the DeepLab v3 paper).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from utils.engine import run
from utils.recipes import ADE20K, DEEPLAB_V3, Recipe

recipe = Recipe(
    ADE20K, DEEPLAB_V3,
    model_kwargs={"output_stride": 8, "aux": True},
    iters=150000,
    val_every=10000,
    val_base_size=512,
)
cfg = recipe.config()

if __name__ == "__main__":
    run(cfg)
