import pytest
import torch
from torch import nn

from utils.inference import InferenceConfig, predict_logits
from utils.inference import sliding_window, tile_starts


class Pointwise(nn.Module):
    """A 1x1-conv model: exactly translation-equivariant, so tiles must reproduce the whole image."""

    def __init__(self, classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


def test_tile_starts_cover_the_length_and_end_at_the_border():
    assert tile_starts(10, 4, 3) == [0, 3, 6]
    assert tile_starts(11, 4, 3) == [0, 3, 6, 7]
    assert tile_starts(3, 4, 3) == [0]


@pytest.mark.parametrize("size,tile,stride,batch", [((37, 53), 16, 11, 3), ((32, 32), 16, 16, 1), ((10, 7), 16, 8, 2)])
def test_sliding_window_equals_whole_image_for_an_equivariant_model(size, tile, stride, batch):
    model = Pointwise().eval()
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        whole = model(images)["out"]
        tiled = sliding_window(lambda x: model(x)["out"], images, 4, tile, stride, batch)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-5)


def test_overlapping_tiles_are_averaged():
    # A "model" that returns the tile's own count of calls shows how overlaps are averaged.
    calls = []

    def constant(x):
        calls.append(x.shape[0])
        return torch.ones(x.shape[0], 1, *x.shape[-2:]) * len(calls)

    out = sliding_window(constant, torch.zeros(1, 3, 8, 12), 1, (8, 8), (8, 4), batch_size=1)
    # tiles start at x = 0 and 4: columns 4..7 see both (values 1 and 2)
    assert torch.allclose(out[0, 0, 0], torch.tensor([1.0] * 4 + [1.5] * 4 + [2.0] * 4))
    assert calls == [1, 1]


def test_flip_and_scales_on_a_flip_equivariant_model_match_plain_inference():
    model = Pointwise().eval()
    images = torch.randn(1, 3, 24, 36)
    plain = predict_logits(model, images, 4, InferenceConfig())
    tta = predict_logits(model, images, 4, InferenceConfig(scales=(1.0,), flip=True))
    assert torch.allclose(plain, tta, atol=1e-5)
    scales = (0.5, 1.0, 1.5)
    multi = predict_logits(model, images, 4, InferenceConfig(scales=scales))
    multi_flip = predict_logits(model, images, 4, InferenceConfig(scales=scales, flip=True))
    assert multi.shape == plain.shape
    assert torch.allclose(multi, multi_flip, atol=1e-5)
    assert torch.equal(multi.argmax(1), multi_flip.argmax(1))


def test_bad_tiling_is_rejected():
    with pytest.raises(ValueError):
        sliding_window(lambda x: x, torch.zeros(1, 3, 8, 8), 3, 4, 5)
    with pytest.raises(ValueError):
        InferenceConfig(scales=(0.0,)).validate()
