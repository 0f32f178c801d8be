"""The engine's speed flags on the CPU, and no host synchronisation in the hot loop."""
import dataclasses
import sys

import pytest
import torch

from utils.checkpoint import load_checkpoint
from utils.engine import TrainConfig, Trainer


def tiny_config(run_dir, **overrides) -> TrainConfig:
    base = TrainConfig(model="u_net", model_kwargs={"width": 4, "depth": 2}, dataset="shapes",
                       dataset_kwargs={"size": 32, "length": 16}, iters=4, batch_size=2, lr=0.01,
                       crop_size=32, scale_min=1.0, scale_max=1.0, val_every=4, val_batch_size=4,
                       workers=0, device="cpu", progress=False, run_dir=str(run_dir))
    return dataclasses.replace(base, **overrides)


@pytest.mark.parametrize("flags", [{"amp": True}, {"channels_last": True}, {"amp": True, "channels_last": True}])
def test_amp_and_channels_last_train_on_the_cpu(tmp_path, flags):
    trainer = Trainer(tiny_config(tmp_path, **flags))
    assert trainer.autocast_dtype == (torch.bfloat16 if flags.get("amp") else None)
    assert not trainer.scaler.is_enabled()  # bf16 needs no loss scaling
    trainer.fit()
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    assert all(v.dtype != torch.bfloat16 for v in state["state_dict"].values())  # weights stay fp32


@pytest.mark.parametrize("native", [True, False])
def test_amp_on_the_cpu_warns_only_where_bf16_is_emulated(tmp_path, monkeypatch, capsys, native):
    monkeypatch.setattr("utils.runtime.cpu_has_native_bf16", lambda: native)
    Trainer(tiny_config(tmp_path, amp=True))
    assert ("no native bf16" in capsys.readouterr().out) == (not native)


HOST_SYNCS = ("item", "tolist", "__bool__", "__int__", "__float__", "cpu", "numpy")


# The modules that run in each training step.
ENGINE_FILES = ("utils/engine.py", "utils/trainer.py", "utils/losses.py", "utils/run_state.py", "utils/callbacks.py",
                "utils/training_log.py")


def test_the_training_loop_syncs_with_the_host_only_at_log_intervals(tmp_path, monkeypatch):
    # On a GPU each of these calls waits for the device. Count those made from the
    # engine, the loss or a model while training (validation is switched off here).
    trainer = Trainer(tiny_config(tmp_path, iters=9, log_every=3, val_every=1000))
    monkeypatch.setattr(Trainer, "validate_and_save", lambda self: {})
    guard = getattr(trainer, "guard", None)  # the non-finite-loss guard reads its flags every step
    if guard is not None and hasattr(type(guard), "deferred"):  # only where that is free: act as on a GPU
        monkeypatch.setattr(type(guard), "deferred", property(lambda self: True))
    calls = []
    for name in HOST_SYNCS:
        def spy(self, *args, _original=getattr(torch.Tensor, name), _name=name, **kwargs):
            frame = sys._getframe(1)
            where = frame.f_code.co_filename.replace("\\", "/")
            if where.endswith(ENGINE_FILES) or "/models/" in where:
                calls.append((_name, where, frame.f_lineno, trainer.state.iteration))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, spy)
    trainer.fit()
    assert calls, "the loss is read at log intervals"
    off_interval = [call for call in calls if call[3] % 3 != 0]
    assert not off_interval, f"host syncs between log intervals: {off_interval}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_cuda_synchronisation_between_log_intervals(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, device="cuda", iters=6, log_every=6, val_every=1000))
    trainer.validate_and_save = lambda: {}
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with pytest.warns(UserWarning) as record:
            trainer.fit()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [str(w.message) for w in record if "synchroniz" in str(w.message)]
    assert len(syncs) <= 1, syncs  # the one .item() of the loss at iteration 6
