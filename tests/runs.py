"""Shared by the engine tests: a tiny training config, and a run killed right after a save."""
import dataclasses

import pytest

from utils.engine import TrainConfig


def tiny_config(run_dir, **overrides) -> TrainConfig:
    """A U-Net of width 4 on 24 generated 32 x 32 images: 8 iterations, validated every 4."""
    base = TrainConfig(model="u_net", model_kwargs={"width": 4, "depth": 2}, dataset="shapes",
                       dataset_kwargs={"size": 32, "length": 24}, iters=8, batch_size=4, lr=0.01,
                       optimizer="adamw", crop_size=32, scale_min=1.0, scale_max=1.0, val_every=4,
                       val_batch_size=8, workers=0, device="cpu", progress=False, run_dir=str(run_dir))
    return dataclasses.replace(base, **overrides)


class Killed(Exception):
    pass


def train_until_killed(trainer_class, cfg: TrainConfig, iteration: int, monkeypatch, **trainer_kwargs) -> None:
    """Train `cfg` with `trainer_class(cfg, **trainer_kwargs)` and end the process's run right after
    its save at `iteration`, as a job killed there would (last.pth holds that iteration)."""
    original = trainer_class.validate_and_save

    def killed_after_the_save(self):
        metrics = original(self)
        if self.state.iteration == iteration:
            raise Killed
        return metrics

    monkeypatch.setattr(trainer_class, "validate_and_save", killed_after_the_save)
    with pytest.raises(Killed):
        trainer_class(cfg, **trainer_kwargs).fit()
    monkeypatch.setattr(trainer_class, "validate_and_save", original)
