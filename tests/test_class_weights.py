"""Class weights from training masks: median frequency balancing and ENet's inverse log."""
import json
import math

import numpy as np
import pytest
import torch

import datasets
from tools.fake_data import make
from utils import class_weights as cw

# Two hand-made masks, 4 classes (class 3 never occurs), 255 ignored.
MASKS = [np.array([[0, 0], [0, 1]]), np.array([[1, 1], [2, 255]])]


def test_counts():
    counts = cw.count_pixels(MASKS, 4)
    assert counts["pixels"] == [3, 3, 1, 0]
    # labelled pixels of the images holding each class: class 0 only in the first (4),
    # class 1 in both (4 + 3), class 2 only in the second (3 labelled pixels)
    assert counts["image_pixels"] == [4, 7, 3, 0]
    with pytest.raises(ValueError, match="outside"):
        cw.count_pixels([np.array([[5]])], 4)


def test_median_frequency():
    # freq = 3/4, 3/7, 1/3; the median is 3/7; weight = (3/7) / freq
    weights = cw.weights_from_counts("median-freq", cw.count_pixels(MASKS, 4))
    assert weights == pytest.approx([4 / 7, 1.0, 9 / 7, 0.0])


def test_inverse_log():
    # p = 3/7, 3/7, 1/7 of the 7 labelled pixels; weight = 1 / ln(1.02 + p)
    weights = cw.weights_from_counts("inverse-log", cw.count_pixels(MASKS, 4))
    expected = [1 / math.log(1.02 + 3 / 7)] * 2 + [1 / math.log(1.02 + 1 / 7), 0.0]
    assert weights == pytest.approx(expected)
    assert cw.weights_from_counts("none", cw.count_pixels(MASKS, 4)) is None
    with pytest.raises(ValueError, match="median-freq"):
        cw.weights_from_counts("median", cw.count_pixels(MASKS, 4))


def test_dataset_weights_are_cached(tmp_path, monkeypatch):
    root = make("camvid", tmp_path / "data", size=(12, 16), n=3)
    dataset = datasets.build_dataset("camvid", "train", root)
    masks = [dataset.load(i)[1] for i in range(len(dataset))]
    expected = cw.weights_from_counts("median-freq", cw.count_pixels(masks, dataset.num_classes))
    cache = tmp_path / "cache"
    weights = cw.compute_class_weights("median-freq", "camvid", dataset, {}, cache)
    assert weights.dtype == torch.float32 and weights.tolist() == pytest.approx(expected)
    files = list(cache.glob("camvid-train-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"]["root"] == str(root.resolve())
    # the second call reads the cache (counting would fail now), for any method
    monkeypatch.setattr(cw, "count_pixels", lambda *a, **k: pytest.fail("counted again"))
    assert cw.compute_class_weights("median-freq", "camvid", dataset, {}, cache).tolist() == weights.tolist()
    assert cw.compute_class_weights("inverse-log", "camvid", dataset, {}, cache) is not None
    assert cw.compute_class_weights("none", "camvid", dataset, {}, cache) is None


def test_editing_the_folder_declaration_recomputes_the_cached_counts(tmp_path):
    from tools.fake_data import make_own_folder

    root = make_own_folder(tmp_path / "own", n=4)
    cache = tmp_path / "cache"
    (root / "dataset.json").write_text(json.dumps({"classes": {"background": 0, "foreground": 255}}))
    first = cw.pixel_counts("folder", datasets.build_dataset("folder", "all", root), cache_dir=cache)
    # same class count, same files: only the meaning of the values changed
    (root / "dataset.json").write_text(json.dumps({"classes": {"background": 255, "foreground": 0}}))
    second = cw.pixel_counts("folder", datasets.build_dataset("folder", "all", root), cache_dir=cache)
    assert second["pixels"] == first["pixels"][::-1] and first["pixels"][0] != first["pixels"][1]
