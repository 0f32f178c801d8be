"""Our models against torchvision's segmentation models, built with random weights.

DeepLab v3 (ResNet-50 and -101) must be the same function as torchvision's
once its state dict is converted with `models.deeplab.from_torchvision`.

FCN-ResNet is not compared: torchvision's `fcn_resnet50` is a ResNet dilated
to output stride 8 with its FCNHead (3x3 conv 2048->512, BN, ReLU, dropout,
1x1 conv) and no skips, while models/fcn.py follows the FCN paper: a 1x1 score
layer on an undilated backbone (strides 8/16/32) plus zero-initialised skip
scores and learnable 2x upsamplings, and it pads the input to a multiple of
32. There is no 3x3 conv + BN to carry torchvision's head, and FCN refuses a
dilated backbone, so torchvision's weights have nowhere to go.
"""
import pytest
import torch
import torchvision

import models
from models import deeplab


def _torchvision_deeplab(arch: str) -> torch.nn.Module:
    model = torchvision.models.get_model(f"deeplabv3_{arch}", weights=None, weights_backbone=None,
                                         num_classes=21, aux_loss=True)
    # Random affine parameters and running statistics, so that a mix-up of BN
    # layers or buffers shows in the logits. The last BN of each bottleneck is
    # kept small (as zero_init_residual would) so that ResNet-101 does not blow
    # up, and the classifiers are scaled to give logits of order 1: a 5% change
    # of one running variance (layer1, layer3, ASPP or head) then moves them
    # by 3e-3 or more, far above the tolerance (checked by hand).
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(*((0.2, 0.5) if name.endswith("bn3") else (0.5, 1.5)))
            module.bias.data.normal_(0, 0.1)
    model.classifier[4].weight.data.mul_(10)
    model.aux_classifier[4].weight.data.mul_(10)
    return model.eval()


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ["resnet50", "resnet101"])
def test_deeplab_v3_matches_torchvision(arch):
    theirs = _torchvision_deeplab(arch)
    ours = deeplab.deeplab_v3(21, backbone=arch, output_stride=8, aux=True)
    ours.load_state_dict(deeplab.from_torchvision(theirs.state_dict()), strict=True)
    ours.eval()
    # Only the top-level flag: 'aux' is returned while every layer runs as in eval.
    ours.training = True
    x = torch.randn(1, 3, 97, 129)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    for key in ("out", "aux"):
        assert got[key].shape == expected[key].shape == (1, 21, 97, 129)
        assert expected[key].std() > 0.1, "degenerate logits would make the comparison meaningless"
        assert (got[key] - expected[key]).abs().max() < 1e-4, key


def test_deeplab_v3_has_torchvisions_parameter_count_at_the_paper_setting():
    theirs = torchvision.models.segmentation.deeplabv3_resnet101(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    ours = models.build_model("deeplab_v3", 21, aux=True)
    assert models.default_backbone("deeplab_v3") == "resnet101"
    assert _count(ours) == _count(theirs) == 60_996_202


def test_published_weights_file_loads_through_the_helper(tmp_path, monkeypatch):
    theirs = _torchvision_deeplab("resnet50")
    torch.save(theirs.state_dict(), tmp_path / "deeplabv3_resnet50_coco-cd0a2569.pth")
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    ours = deeplab.deeplab_v3_from_torchvision("resnet50").eval()
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        assert (ours(x)["out"] - theirs(x)["out"]).abs().max() < 1e-4


def test_missing_published_weights_name_the_path_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SEG_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="https://download.pytorch.org/models/deeplabv3_resnet101"):
        deeplab.deeplab_v3_from_torchvision("resnet101")


def test_converter_rejects_foreign_keys():
    with pytest.raises(KeyError, match="decoder.weight"):
        deeplab.from_torchvision({"decoder.weight": torch.zeros(1)})
