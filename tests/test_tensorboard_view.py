"""TensorBoard as users see it: curves without one-point hparam charts, the HParams tab, the
same evenly spaced val samples at every validation, each large enough to read, and the
confusion matrix."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from runs import tiny_config
from utils.engine import Trainer
from utils.val_samples import PANEL_WIDTH, evenly_spaced, stacked


@pytest.mark.parametrize("count, length, expected", [
    (4, 100, [0, 33, 66, 99]),
    (3, 24, [0, 12, 23]),
    (1, 10, [0]),
    (5, 3, [0, 1, 2]),
    (0, 10, []),
])
def test_samples_are_spread_over_the_whole_split(count, length, expected):
    assert evenly_spaced(count, length) == expected


def test_a_small_sample_is_enlarged_sharply_to_a_readable_width():
    mask = torch.zeros(3, 32, 40, dtype=torch.uint8)
    mask[:, :16] = 200  # top half bright
    picture = stacked([mask, mask, mask], "caption")
    factor = -(-PANEL_WIDTH[0] // 40)  # 8: the smallest whole factor reaching the minimum width
    panel_height = 32 * factor
    assert picture.shape[1] == 40 * factor and picture.shape[0] > 3 * panel_height + 2 * 6
    panel = picture[-panel_height:]  # the last panel
    assert (panel[: 16 * factor] == 200).all() and (panel[16 * factor:] == 0).all()  # nearest: no blur


def test_a_large_sample_is_reduced():
    image = torch.full((3, 1024, 2048), 90, dtype=torch.uint8)
    picture = stacked([image, image, image], "caption")
    assert picture.shape[1] == PANEL_WIDTH[1] and picture.shape[0] > 3 * 256


def test_a_runs_tensorboard_holds_what_users_came_for(tmp_path):
    cfg = tiny_config(tmp_path / "run", val_images=3)  # validations at iterations 4 and 8
    trainer = Trainer(cfg)
    trainer.fit()
    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert "val/mean_iu" in tags["scalars"] and "train/loss" in tags["scalars"]
    assert not [tag for tag in tags["scalars"] if tag.startswith("hparam")]  # no one-point charts
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")  # the HParams tab has the run

    indices = evenly_spaced(3, len(trainer.val_set))
    samples = sorted(tag for tag in tags["images"] if tag.startswith("val_samples/"))
    assert samples == [f"val_samples/{i:05d}" for i in indices]
    for tag in samples + ["val/confusion_matrix"]:
        assert [event.step for event in events.Images(tag)] == [4, 8]  # the same images at every validation
    first = events.Images(samples[0])[0]
    assert first.width >= PANEL_WIDTH[0] and first.height > 3 * first.width  # 32-pixel images, 10 times larger
