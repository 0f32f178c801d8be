import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eval as eval_script
from utils import engine
from utils.checkpoint import load_checkpoint, save_checkpoint
from runs import tiny_config, train_until_killed
from utils.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _fixed_batch_loss(trainer):
    images, targets = next(iter(trainer.val_loader))
    trainer.model.eval()
    with torch.no_grad():
        return trainer.criterion(trainer.model(images), targets).item()


def test_a_few_iterations_lower_the_loss(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, iters=30, val_every=30, dataset_kwargs={"size": 32, "length": 64}))
    before = _fixed_batch_loss(trainer)
    trainer.fit()
    assert _fixed_batch_loss(trainer) < before * 0.95


def test_checkpoints_and_tensorboard_events_are_written(tmp_path):
    Trainer(tiny_config(tmp_path)).fit()
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["iteration"] == 8 and state["model"] == "u_net" and state["num_classes"] == 4
    assert load_checkpoint(tmp_path / "best.pth")["best_score"] == state["best_score"]
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_continues_at_the_same_iteration_with_the_same_result(tmp_path, monkeypatch):
    uninterrupted = Trainer(tiny_config(tmp_path / "a"))
    uninterrupted.fit()
    train_until_killed(Trainer, tiny_config(tmp_path / "b"), 4, monkeypatch)

    resumed = Trainer(tiny_config(tmp_path / "b", resume=True))
    assert resumed.state.iteration == 4
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * (1 - 4 / 8) ** 0.9)
    resumed.fit()
    assert resumed.state.iteration == 8
    for (name, a), b in zip(uninterrupted.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.state.best_score == uninterrupted.state.best_score


def test_eval_script_reproduces_the_validation_mean_iu(tmp_path, capsys):
    Trainer(tiny_config(tmp_path)).fit()
    best = load_checkpoint(tmp_path / "best.pth")
    metrics = eval_script.main([str(tmp_path / "best.pth"), "--device", "cpu", "--workers", "0",
                                "--json", str(tmp_path / "m.json")])
    assert metrics["mean_iu"] == best["metrics"]["mean_iu"]
    assert f"mean_iu  {best['metrics']['mean_iu']:.4f}" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["mean_iu"] == best["metrics"]["mean_iu"]


def test_existing_checkpoints_are_never_overwritten_silently(tmp_path):
    Trainer(tiny_config(tmp_path)).fit()
    with pytest.raises(SystemExit, match="--resume"):
        Trainer(tiny_config(tmp_path))
    first = (tmp_path / "last.pth").read_bytes()
    Trainer(tiny_config(tmp_path, overwrite=True))
    backups = list(tmp_path.glob("replaced-*/last.pth"))
    assert len(backups) == 1 and backups[0].read_bytes() == first


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no last.pth"):
        Trainer(tiny_config(tmp_path, resume=True))


@pytest.mark.parametrize("argv,message", [
    (["--model", "nope"], "invalid choice"),
    (["--dataset", "nope"], "invalid choice"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--val-mode", "tiles"], "invalid choice"),
    (["--model-kwargs", "[1]"], "JSON object"),
])
def test_bad_flags_fail_before_any_work(tmp_path, argv, message, capsys):
    with pytest.raises(SystemExit):
        engine.run(tiny_config(tmp_path), argv)
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_every_config_field_is_a_flag(tmp_path):
    cfg = engine.parse_config(tiny_config(tmp_path), ["--iters", "3", "--no-hflip", "--model-kwargs", '{"width": 2}',
                                                      "--backbone", "none", "--amp"])
    assert cfg.iters == 3 and cfg.hflip is False and cfg.model_kwargs == {"width": 2} and cfg.amp
    assert cfg.backbone is None


def test_checkpoint_files_reject_code_and_foreign_formats(tmp_path):
    from utils.checkpoint import CheckpointError

    torch.save({"state_dict": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint of this repository"):
        load_checkpoint(tmp_path / "foreign.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save(Evil(), tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pth")
    save_checkpoint({"x": torch.ones(2)}, tmp_path / "ok.pth")
    assert torch.equal(load_checkpoint(tmp_path / "ok.pth")["x"], torch.ones(2))


def test_training_script_runs_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train/shapes-u-net/train.py"), "--iters", "2", "--batch-size", "2",
         "--val-every", "2", "--model-kwargs", '{"width": 4}', "--dataset-kwargs", '{"size": 32, "length": 8}',
         "--crop-size", "32", "--workers", "0", "--device", "cpu", "--run-dir", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("best mean_iu ")
    assert (tmp_path / "best.pth").is_file()


def test_the_run_folder_says_what_produced_it(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path, iters=4, log_every=2)
    Trainer(cfg).fit()
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["config"] == json.loads(json.dumps(dataclasses.asdict(cfg)))  # every field, as JSON
    assert record["torch"] == str(torch.__version__) and record["torchvision"]
    commit = record["git_commit"]
    assert commit is None or (len(commit) == 40 and isinstance(record["git_dirty"], bool))
    assert load_checkpoint(tmp_path / "last.pth")["provenance"]["git_commit"] == commit
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    assert "config" in "".join(events.Tags()["tensors"])  # the settings as TensorBoard text
    throughput = [e.value for e in events.Scalars("train/images_per_s")]
    assert len(throughput) == 2 and all(v > 0 for v in throughput)
    # the settings beside the final figures in the HParams tab, without one-point hparam/* charts
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
    assert not [tag for tag in events.Tags()["scalars"] if tag.startswith("hparam")]


def test_a_resume_keeps_the_first_record_and_notes_what_changed(tmp_path):
    Trainer(tiny_config(tmp_path, iters=4)).fit()
    Trainer(tiny_config(tmp_path, iters=8, resume=True)).fit()
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["config"]["iters"] == 4
    assert [(r["iteration"], r["changed"]) for r in record["resumes"]] == [(4, {"iters": 8, "resume": True})]


def test_progress_without_a_terminal_is_periodic_lines(capsys):
    from utils.visualize import NoProgress, ProgressLines, progress_bar

    assert isinstance(progress_bar(10, "val", show=False), NoProgress)
    lines = progress_bar(10, "val", bars=False)
    assert isinstance(lines, ProgressLines)
    lines.interval = 0.0  # print on every update
    lines.set_postfix(loss="0.5")
    lines.update(5)
    assert capsys.readouterr().out.startswith("val 5/10 (50%), ")
    quiet = progress_bar(10, "val", bars=False)  # a loop shorter than the interval prints nothing
    for _ in range(10):
        quiet.update()
    quiet.close()
    assert capsys.readouterr().out == ""


def test_eval_prints_how_the_checkpoint_was_trained(tmp_path, capsys):
    Trainer(tiny_config(tmp_path, iters=4)).fit()
    capsys.readouterr()
    eval_script.main([str(tmp_path / "best.pth"), "--device", "cpu", "--workers", "0", "--no-progress"])
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("trained: u_net {'width': 4, 'depth': 2} on shapes train, iteration 4/4, batch 4")
    assert "adamw lr 0.01" in first
