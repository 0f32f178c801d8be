"""Data loaders for training and evaluation.

Training batches come from `ResumableBatchSampler`, which draws a fresh permutation per
epoch from (seed, epoch), shards it across processes, drops the incomplete last
batch (BatchNorm never sees a lone sample) and can start mid-epoch. Each sample
carries its own seed, derived from (seed, epoch, index), under which its random
augmentation runs; so the data a run sees depends neither on the number of
workers nor on whether it was interrupted and resumed.
"""
from __future__ import annotations

import signal
import sys
from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from datasets.base import DatasetError


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2 ** 63)


class ResumableBatchSampler:
    """Batch sampler of (index, sample seed) lists: one seeded permutation per epoch, sharded
    across processes, that can start at any batch of an epoch (an exact resume)."""

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0
        if len(self) < 1:
            raise ValueError(f"the training set has {length} samples, fewer than one batch of {batch_size} "
                             f"per process on {world_size} process(es); lower --batch-size")

    def __len__(self) -> int:
        return self.length // self.world_size // self.batch_size

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = epoch, start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        per_rank = self.length // self.world_size
        shard = order[self.rank::self.world_size][:per_rank]
        for b in range(self.start, len(self)):
            indices = shard[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in indices]


def _log_bad_sample(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SeededSamples(Dataset):
    """Runs each sample's augmentation under the seed that comes with its index.

    With `skip_bad`, a sample whose files are bad (DatasetError: unreadable image,
    mask of the wrong size, unknown label id) is logged and replaced by the next
    index that loads, under the same seed: the batch keeps its size and the
    substitute is the same whatever the number of workers or interruptions.

    With `pixel_weights` (a function of the transformed mask, e.g. the U-Net border
    weight map), each sample is (image, mask, weights): the weights are computed
    in the worker from the augmented mask, so they follow every crop, flip and warp.
    """

    def __init__(self, dataset: Dataset, skip_bad: bool = False,
                 pixel_weights: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.dataset = dataset
        self.skip_bad = skip_bad
        self.pixel_weights = pixel_weights

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        length = len(self.dataset)
        for attempt in range(length if self.skip_bad else 1):
            candidate = (index + attempt) % length
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    sample = self.dataset[candidate]
                    if self.pixel_weights is not None:
                        sample = (*sample, self.pixel_weights(sample[1]))
                    return sample
            except DatasetError as err:
                if not self.skip_bad:
                    raise
                _log_bad_sample(f"skipping bad training sample {candidate} ({err}); sample "
                                f"{(candidate + 1) % length} takes its place")
        raise DatasetError(f"--skip-bad-samples: all {length} training samples are bad")


class SkipBadSamples(Dataset):
    """Evaluation samples whose files are bad become None (logged), which the collate drops:
    a substitute would count another sample twice in the metrics."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except DatasetError as err:
            _log_bad_sample(f"skipping bad evaluation sample {index} ({err}); it is left out of the metrics")
            return None


def _ignore_interrupts(worker_id: int) -> None:
    # Ctrl-C reaches every process of the terminal: workers leave stopping to the main
    # process, which finishes its step, writes last.pth and then shuts them down.
    # (SIGTERM keeps its meaning: DataLoader and multiprocessing use it to end workers.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _as_tensors(batch):
    # Drop the tv_tensors subclasses once the transforms are done: plain tensors
    # are cheaper to move and avoid subclass dispatch inside the model.
    batch = [sample for sample in batch if sample is not None]  # bad samples skipped by SkipBadSamples
    if not batch:
        return None
    images, masks, *extra = zip(*batch)  # extra: per-pixel loss weights (SeededSamples' pixel_weights)
    for kind, items in (("images", images), ("masks", masks)):
        sizes = sorted({tuple(t.shape[-2:]) for t in items})
        if len(sizes) > 1:
            raise ValueError(f"cannot batch {kind} of different sizes {sizes}: this data set's images vary "
                             f"in size, so evaluate one image per batch (--val-batch-size 1 when training, "
                             f"--batch-size 1 for eval.py)")
    return (torch.stack([i.as_subclass(torch.Tensor) for i in images]),
            torch.stack([m.as_subclass(torch.Tensor) for m in masks]),
            *(torch.stack([torch.as_tensor(w) for w in items]) for items in extra))


# Each loader gets its own generator for the base seed it draws per iterator: drawn from
# the global RNG instead, it would shift dropout's random numbers whenever a resumed run
# starts an iterator that the uninterrupted run did not (augmentation has its own seeds).

def train_loader(dataset: Dataset, batches: ResumableBatchSampler, workers: int, pin_memory: bool,
                 skip_bad: bool = False, pixel_weights: Callable | None = None) -> DataLoader:
    return DataLoader(SeededSamples(dataset, skip_bad, pixel_weights), batch_sampler=batches, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=workers > 0, collate_fn=_as_tensors,
                      worker_init_fn=_ignore_interrupts, generator=torch.Generator())


class ShardedIndices(torch.utils.data.Sampler):
    """Every process takes every world_size-th sample, in order, with no padding,
    so that all-reduced confusion matrices count each sample exactly once."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, length, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


def eval_loader(dataset: Dataset, batch_size: int, workers: int, pin_memory: bool,
                rank: int = 0, world_size: int = 1, skip_bad: bool = False) -> DataLoader:
    """Batches of (images, masks); with `skip_bad`, a batch whose samples were all bad is None."""
    return DataLoader(SkipBadSamples(dataset) if skip_bad else dataset, batch_size=batch_size,
                      sampler=ShardedIndices(len(dataset), rank, world_size), num_workers=workers,
                      pin_memory=pin_memory, collate_fn=_as_tensors, worker_init_fn=_ignore_interrupts,
                      generator=torch.Generator())
