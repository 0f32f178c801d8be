"""The benchmarks time the engine's own training step (benchmarks/child.py's engine_trainer)."""
import torch

from benchmarks import child


def test_engine_trainer_step_updates_weights_and_counts_the_iteration(tmp_path):
    trainer = child.engine_trainer(model_name="u_net", model_kwargs={"width": 4, "depth": 2}, classes=21, crop=32,
                                   batch=2, device="cpu", run_dir=str(tmp_path))
    try:
        assert trainer.model.classifier.out_channels == 21  # the benchmark's class count, not the data set's 4
        before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        loss = trainer.train_step((torch.randn(2, 3, 32, 32), torch.randint(0, 21, (2, 32, 32))))
    finally:
        trainer.logger.close()
    assert trainer.state.iteration == 1
    assert torch.isfinite(loss) and not loss.requires_grad
    unchanged = [name for name, p in trainer.model.named_parameters() if torch.equal(p, before[name])]
    assert not unchanged
