"""The checkpoint layout (utils/checkpoint.py): one writer, one migration of older layouts."""
import pytest
import torch

from runs import tiny_config, train_until_killed
from utils.checkpoint import (FORMAT_V1, TRAINING_KEYS, VERSION, CheckpointError, load_checkpoint, make_checkpoint,
                              migrate, model_from_checkpoint)
from utils.engine import Trainer

# What the first layout (format semseg-checkpoint-v1, November 2026) did not record yet.
ADDED_SINCE_V1 = ("version", "input_norm", "provenance", "extra", "callbacks", "data_position", "world_size",
                  "nonfinite_run", "validation_pending")
CONFIG_ADDED_SINCE_V1 = ("val_protocol", "val_long_side", "val_mirror_margin", "loss", "loss_kwargs", "callbacks",
                         "callback_kwargs")


def as_version_1(state: dict) -> dict:
    old = {k: v for k, v in state.items() if k not in ADDED_SINCE_V1}
    old["format"] = FORMAT_V1
    old["config"] = {k: v for k, v in state["config"].items() if k not in CONFIG_ADDED_SINCE_V1}
    return old


def test_the_writer_states_the_layout_and_refuses_an_incomplete_training_state():
    common = dict(model="u_net", model_kwargs={"width": 4}, num_classes=2, input_norm={}, dataset="shapes",
                  dataset_kwargs={}, classes=["a", "b"], palette=[(0, 0, 0), (1, 1, 1)], state_dict={}, config={})
    converted = make_checkpoint(**common, converted_from={"source": "x"})
    assert converted["version"] == VERSION and not set(TRAINING_KEYS) & set(converted)
    assert converted["palette"] == [[0, 0, 0], [1, 1, 1]] and converted["metrics"] == {}
    with pytest.raises(ValueError, match=r"missing \['best_iteration'.*unknown \['epochs'\]"):
        make_checkpoint(**common, training={"optimizer": {}, "epochs": 1})


def test_the_engine_writes_every_key_of_the_layout(tmp_path):
    Trainer(tiny_config(tmp_path, iters=2, val_every=2)).fit()
    state = load_checkpoint(tmp_path / "last.pth")
    converted = make_checkpoint(**{k: state[k] for k in ("model", "model_kwargs", "num_classes", "input_norm",
                                                         "dataset", "dataset_kwargs", "classes", "palette",
                                                         "state_dict", "config")})
    assert set(state) == set(converted) | set(TRAINING_KEYS)


def test_a_version_1_checkpoint_evaluates_and_resumes_exactly(tmp_path, monkeypatch):
    whole = Trainer(tiny_config(tmp_path / "whole"))
    whole.fit()
    run_dir = tmp_path / "old"
    train_until_killed(Trainer, tiny_config(run_dir), 4, monkeypatch)
    current = torch.load(run_dir / "last.pth", weights_only=True)
    torch.save(as_version_1(current), run_dir / "last.pth")  # as the first layout's writer left it

    state = load_checkpoint(run_dir / "last.pth")
    assert state["version"] == VERSION and state["input_norm"] == current["input_norm"]  # ImageNet's
    assert {k: state["config"][k] for k in CONFIG_ADDED_SINCE_V1} == {
        "val_protocol": "default", "val_long_side": 0, "val_mirror_margin": 0, "loss": "ce", "loss_kwargs": {},
        "callbacks": [], "callback_kwargs": {}}
    assert (state["world_size"], state["nonfinite_run"], state["validation_pending"]) == (1, 0, False)
    model = model_from_checkpoint(state)
    for name, value in model.state_dict().items():
        assert torch.equal(value, current["state_dict"][name]), name

    resumed = Trainer(tiny_config(run_dir, resume=True))
    assert resumed.state.iteration == 4
    resumed.fit()  # without a recorded data position the order continues from the iteration count
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_layout_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "future.pth"
    torch.save({"format": "semseg-checkpoint", "version": VERSION + 1}, path)
    with pytest.raises(CheckpointError, match=rf"future.pth has checkpoint layout version {VERSION + 1}; "
                                              rf"this code reads versions 1..{VERSION}"):
        load_checkpoint(path)


def test_migration_leaves_a_current_checkpoint_as_it_is():
    state = {"format": "semseg-checkpoint", "version": VERSION, "config": {}}
    assert migrate(state) is state
