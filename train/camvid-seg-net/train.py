"""SegNet (VGG16 with BatchNorm) on CamVid, 11 classes.

Source: Badrinarayanan, Kendall and Cipolla, "SegNet: A Deep Convolutional
Encoder-Decoder Architecture for Image Segmentation", IEEE TPAMI 2017
(arXiv:1511.00561), Sec. 3.2 (training) and 4.1 (road scenes, CamVid).

Paper setting, and how it is set here:
- Encoder: the 13 convolutions of VGG16 (here torchvision's vgg16_bn with
  ImageNet weights); decoder with max-unpooling by the encoder's indices;
  output stride 32 before unpooling; no auxiliary loss.
- Optimiser: SGD, fixed learning rate 0.1 (constant: poly_power 0),
  momentum 0.9, mini-batches of 12 images, shuffled each epoch.
- Whole 360 x 480 images, no augmentation: crop 480 with no scaling and no
  flip pads each image to 480 x 480 with the ignore index, so every pixel
  of the image is seen and padding never counts in the loss.
- Data: the SegNet tutorial's CamVid (367 train, 101 val), 11 classes,
  validation whole-image on val.
- Deviation: the paper weights the loss by median frequency balancing; the
  engine has no class weights, so the loss is unweighted (class accuracy,
  acc_cls, suffers most).
- Iterations: the paper trains until the training loss converges; 10000
  iterations (about 330 epochs) is our choice; weight decay 5e-4 ours too.
Reported: see the paper's CamVid table; we do not quote a figure here.
"""
import sys; sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__file__), "..", ".."))  # noqa: E702,E401

from utils.engine import TrainConfig, run

cfg = TrainConfig(
    model="seg_net",
    backbone="vgg16_bn",
    pretrained=True,
    dataset="camvid",
    train_split="train",
    val_split="val",
    iters=10000,
    batch_size=12,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    poly_power=0.0,
    crop_size=480,
    scale_min=1.0,
    scale_max=1.0,
    hflip=False,
    val_every=1000,
    val_mode="whole",
    val_batch_size=4,
)

if __name__ == "__main__":
    run(cfg)
