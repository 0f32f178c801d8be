"""Data loaders for training and evaluation.

Training batches come from `EpochBatches`, which draws a fresh permutation per
epoch from (seed, epoch), shards it across processes, drops the incomplete last
batch (BatchNorm never sees a lone sample) and can start mid-epoch. Each sample
carries its own seed, derived from (seed, epoch, index), under which its random
augmentation runs; so the data a run sees depends neither on the number of
workers nor on whether it was interrupted and resumed.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % (2 ** 63)


class EpochBatches:
    """Batch sampler yielding lists of (index, sample seed) for one epoch at a time."""

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


class SeededSamples(Dataset):
    """Runs each sample's augmentation under the seed that comes with its index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


def _as_tensors(batch):
    # Drop the tv_tensors subclasses once the transforms are done: plain tensors
    # are cheaper to move and avoid subclass dispatch inside the model.
    images, masks = zip(*batch)
    return torch.stack([i.as_subclass(torch.Tensor) for i in images]), \
        torch.stack([m.as_subclass(torch.Tensor) for m in masks])


def train_loader(dataset: Dataset, batches: EpochBatches, workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(SeededSamples(dataset), batch_sampler=batches, num_workers=workers,
                      pin_memory=pin_memory, persistent_workers=workers > 0, collate_fn=_as_tensors)


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
                rank: int = 0, world_size: int = 1) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardedIndices(len(dataset), rank, world_size),
                      num_workers=workers, pin_memory=pin_memory, collate_fn=_as_tensors)
