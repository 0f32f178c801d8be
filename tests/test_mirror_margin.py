"""Overlap-tile inference with mirrored borders (the U-Net paper, Fig. 2)."""
import numpy as np
import pytest
import torch
from torch import nn

from utils.inference import InferenceConfig, mirror_pad, predict_logits


class PointwiseModel(nn.Module):
    """A 1 x 1 convolution: translation equivariant, no context, so borders cannot matter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


def test_mirror_pad_is_numpy_reflect():
    x = torch.rand(1, 2, 5, 7)
    for margin in (0, 3, 6, 11):
        expected = np.pad(x.numpy(), ((0, 0), (0, 0), (margin, margin), (margin, margin)), mode="reflect")
        assert np.array_equal(mirror_pad(x, margin).numpy(), expected)


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_mirror_margin_equals_whole_image_for_a_pointwise_model(mode):
    model = PointwiseModel().eval()
    images = torch.randn(2, 3, 37, 45)
    reference = predict_logits(model, images, 4, InferenceConfig(mode="whole"))
    cfg = InferenceConfig(mode=mode, tile=24, stride=16, mirror_margin=10, flip=True)
    cfg.validate()
    out = predict_logits(model, images, 4, cfg)
    assert out.shape == reference.shape
    assert torch.allclose(out, reference, atol=1e-5)
    with pytest.raises(ValueError, match="mirror_margin"):
        InferenceConfig(mirror_margin=-1).validate()
