"""docs/extending.md runs as written: its Python blocks, in order, give a loss, a callback, a data
set and a Trainer subclass that the engine trains with."""
import re
from pathlib import Path

import pytest
import torch

import datasets
import runs
from utils import losses
from utils.checkpoint import load_checkpoint
from utils.cli import parse_config
from utils.engine import Trainer, run

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture
def page(monkeypatch):
    """The page's Python blocks run in one namespace; what they register is undone afterwards."""
    monkeypatch.setattr(losses, "LOSSES", dict(losses.LOSSES))
    monkeypatch.setattr(datasets, "DATASETS", dict(datasets.DATASETS))
    namespace = {"__name__": "docs_extending"}  # not __main__: the blocks' run(...) lines stay idle
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) == 5
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace


def tiny(run_dir, **overrides):
    return runs.tiny_config(run_dir, **{"dataset_kwargs": {"size": 32, "length": 8}, "iters": 4, "val_every": 2,
                                        **overrides})


def test_the_new_loss_is_registered_and_is_dice_at_one_half(page, tmp_path):
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 6, 5), generator=g)
    target[0, 0] = 255
    tversky = page["TverskyLoss"](alpha=0.5, beta=0.5, eps=0.0)(logits, target)
    dice = losses.DiceLoss(squared=False, eps=0.0)(logits, target)
    assert tversky.item() == pytest.approx(dice.item(), rel=1e-6)
    cfg = parse_config(tiny(tmp_path), ["--loss", "tversky", "--loss-kwargs", '{"alpha": 0.5, "beta": 0.5}'])
    trainer = Trainer(cfg)
    assert isinstance(trainer.criterion.terms[0], page["TverskyLoss"]) and trainer.criterion.terms[0].alpha == 0.5
    trainer.fit()


def test_the_callback_writes_its_history_and_resumes_it(page, tmp_path, monkeypatch):
    run(tiny(tmp_path / "whole"), [], callbacks=[page["ValidationHistory"]()])
    expected = (tmp_path / "whole" / "validation.csv").read_text()
    assert expected.splitlines()[0] == "iteration,mean_iu" and [line.split(",")[0] for line in
                                                                  expected.splitlines()[1:]] == ["2", "4"]
    runs.train_until_killed(Trainer, tiny(tmp_path / "split"), 2, monkeypatch, callbacks=[page["ValidationHistory"]()])
    run(tiny(tmp_path / "split", resume=True), [], callbacks=[page["ValidationHistory"]()])
    assert (tmp_path / "split" / "validation.csv").read_text() == expected


def test_the_new_data_set_trains_and_its_checkpoint_names_its_classes(page, tmp_path):
    sample, mask = page["Stripes"](split="val")[0]
    assert sample.shape == (3, 32, 32) and set(mask.unique().tolist()) <= {0, 1, 2}
    cfg = parse_config(tiny(tmp_path), ["--dataset", "stripes"])
    Trainer(cfg).fit()
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["dataset"] == "stripes" and state["classes"] == ["background", "horizontal", "vertical"]


def test_the_trainer_subclass_gives_the_stem_its_own_rate(page, tmp_path):
    trainer = page["SlowStem"](tiny(tmp_path), stem_lr_mult=0.5)
    *rest, stem = trainer.optimizer.param_groups
    assert stem["lr"] == pytest.approx(0.5 * trainer.cfg.lr) and len(stem["params"]) == 1
    assert sum(len(g["params"]) for g in rest) + 1 == len(list(trainer.model.parameters()))
    trainer.fit()
