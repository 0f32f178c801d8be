"""Entry point that tests/test_distributed.py starts under torchrun (or alone).

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/distributed_worker.py MODE OUT [ARGS...]

Modes:
  train OUT [--fail-rank R] [--stop-at N] [--kill-at N] ENGINE_FLAGS...
                                             run the engine on the tiny Shapes setup; each rank
                                             writes the metrics fit() returns to OUT/rank<r>.json;
                                             rank R raises at its first validation; with --stop-at
                                             every rank exits after validating at iteration N; with
                                             --kill-at rank 1 of torchrun's first attempt kills itself
                                             with SIGKILL right after the save at iteration N
  step OUT                                   one SGD step of a U-Net with BatchNorm in eval mode
                                             under DDP on this rank's half of a fixed batch; rank 0
                                             saves the parameters to OUT/step.pth
  evaluate OUT                               all-reduced metrics of a fixed model on this rank's
                                             shard of the validation set, and an all-reduced
                                             confusion matrix of fixed random labels, to
                                             OUT/eval<r>.pth
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

TINY_FLAGS = ["--model", "u_net", "--model-kwargs", '{"width": 4, "depth": 2}', "--dataset", "shapes",
              "--crop-size", "32", "--scale-min", "1", "--scale-max", "1", "--workers", "0", "--device", "cpu",
              "--no-progress", "--val-batch-size", "4"]


def tiny_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=generator), torch.randint(0, 4, (n, 32, 32), generator=generator)


def tiny_bn_model() -> torch.nn.Module:
    import models

    torch.manual_seed(0)
    model = models.build_model("u_net", 4, width=4, depth=2)
    # Non-trivial running statistics, so that BN in eval mode is not an identity.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def sgd_step(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss = torch.nn.functional.cross_entropy(model(images)["out"], targets)
    loss.backward()
    optimizer.step()


def evaluation_results(rank: int, world: int) -> dict:
    import datasets
    import models
    from utils.data import eval_loader
    from utils.inference import evaluate
    from utils.transforms import eval_transforms
    from utils.binary_metrics import ScoreHistogram
    from utils.metrics import ConfusionMatrix

    torch.manual_seed(0)
    model = models.build_model("u_net", 4, width=4, depth=2)
    val_set = datasets.build_dataset("shapes", "val", None, eval_transforms(None), size=32, length=7)
    loader = eval_loader(val_set, 2, 0, False, rank, world)
    metrics = evaluate(model, loader, 4, torch.device("cpu"))

    generator = torch.Generator().manual_seed(2)
    predictions = torch.randint(0, 5, (6, 16, 16), generator=generator)
    targets = torch.randint(0, 5, (6, 16, 16), generator=generator)
    targets[:, :2] = 255
    confusion = ConfusionMatrix(5)
    confusion.update(predictions[rank::world], targets[rank::world])
    confusion.all_reduce()
    scores = ScoreHistogram()  # the two-class figures' histogram is summed over ranks too
    scores.update(torch.randn(6, 16, 16, generator=generator)[rank::world], (targets % 2)[rank::world])
    scores.all_reduce()
    return {"metrics": metrics, "matrix": confusion.matrix, "scores": scores.counts}


def main(argv: list[str]) -> None:
    import torch.distributed as dist

    from utils import runtime

    mode, out, rest = argv[0], Path(argv[1]), argv[2:]
    if mode == "train":
        from utils import engine

        fail_rank = stop_at = kill_at = None
        if rest[:1] == ["--fail-rank"]:
            fail_rank, rest = int(rest[1]), rest[2:]
        if rest[:1] == ["--stop-at"]:
            stop_at, rest = int(rest[1]), rest[2:]
        if rest[:1] == ["--kill-at"]:
            kill_at, rest = int(rest[1]), rest[2:]
        first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
        rank = int(os.environ.get("RANK", 0))
        original = engine.Trainer.validate_and_save

        def validate_and_save(self):
            if runtime.rank() == fail_rank:
                raise RuntimeError(f"rank {fail_rank} failed on purpose")
            metrics = original(self)
            if self.state.iteration == kill_at and runtime.rank() == 1 and first_attempt:
                os.kill(os.getpid(), signal.SIGKILL)  # last.pth is complete: the save ends in a collective
            if self.state.iteration == stop_at:  # the job ends here, as if its time ran out
                (out / f"rank{rank}.json").write_text(json.dumps(metrics))
                runtime.cleanup()
                sys.stdout.flush()
                os._exit(0)
            return metrics

        engine.Trainer.validate_and_save = validate_and_save
        metrics = engine.run(engine.TrainConfig(), TINY_FLAGS + rest)
        (out / f"rank{rank}.json").write_text(json.dumps(metrics))
        return

    runtime.init_distributed("cpu")
    rank, world = runtime.rank(), runtime.world_size()
    if mode == "step":
        model = tiny_bn_model()
        ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
        images, targets = tiny_batch(4)
        sgd_step(ddp, images[rank::world], targets[rank::world])
        if rank == 0:
            torch.save(model.state_dict(), out / "step.pth")
    elif mode == "evaluate":
        torch.save(evaluation_results(rank, world), out / f"eval{rank}.pth")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
