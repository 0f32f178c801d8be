"""Per-pixel loss weights: the loss's normalisation and the weight maps computed in the loader."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import datasets
from tools.fake_data import make
from utils.data import ResumableBatchSampler, train_loader
from utils.transforms import train_transforms
from utils.losses import build_loss
from utils.weight_map import UNetBorderWeights, unet_weight_map


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    outputs = {"out": torch.randn(2, 3, 6, 7, generator=g), "aux": torch.randn(2, 3, 6, 7, generator=g)}
    target = torch.randint(0, 3, (2, 6, 7), generator=g)
    target[0, :2] = 255
    return outputs, target


@pytest.mark.parametrize("class_weights", [None, torch.tensor([0.5, 2.0, 1.5])])
def test_uniform_pixel_weights_equal_the_unweighted_loss(class_weights):
    outputs, target = batch()
    loss = build_loss("ce", {} if class_weights is None else {"class_weights": class_weights.tolist()})
    plain = loss(outputs, target)
    for value in (1.0, 3.7):
        weighted = loss(outputs, target, torch.full(target.shape, value))
        assert weighted.item() == pytest.approx(plain.item(), rel=1e-6)


def test_weighted_mean_over_labelled_pixels():
    outputs, target = batch(1)
    weights = torch.rand(target.shape) + 0.1
    loss = build_loss("ce", {}, aux_weight=0.0)(outputs, target, weights)
    ce = F.cross_entropy(outputs["out"], target, ignore_index=255, reduction="none")
    valid = target != 255
    assert loss.item() == pytest.approx(((ce * weights)[valid].sum() / weights[valid].sum()).item(), rel=1e-6)


def test_loader_yields_weight_maps_of_the_augmented_masks(tmp_path):
    root = make("isbi", tmp_path, size=48)
    dataset = datasets.build_dataset("isbi", "train", root, train_transforms(32, (0.75, 1.25), True, elastic_std=4))
    hook = UNetBorderWeights(1, 10.0, 5.0)
    loader = train_loader(dataset, ResumableBatchSampler(len(dataset), 2, seed=0), 0, False, pixel_weights=hook)
    images, masks, weights = next(iter(loader))
    assert images.shape == (2, 3, 32, 32) and masks.shape == weights.shape == (2, 32, 32)
    assert weights.dtype == torch.float32
    for mask, weight in zip(masks, weights):
        assert np.allclose(weight.numpy(), unet_weight_map(mask.numpy()))
        assert (weight[mask == 255] == 0).all()
