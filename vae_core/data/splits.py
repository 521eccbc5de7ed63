"""MNIST in memory: the training and evaluation splits a run's settings describe.

The files come from :mod:`vae_core.data.sources` (found or fetched, verified).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from vae_core import seeds
from vae_core.data.sources import prepare_mnist, raw_dir, read_idx
from vae_core.errors import DataError


@dataclass
class Split:
    """Images as one float32 tensor [N, 784] in [0, 1], labels, and ids into the source file."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor
    source: str  # "train" (the 60k file) or "test" (the 10k file)

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, n: int | None) -> Split:
        if n is None or n >= len(self):
            return self
        return Split(self.images[:n], self.labels[:n], self.ids[:n], self.source)


@dataclass
class MNISTData:
    train: Split
    eval: Split


def _read_file(root: Path, train: bool) -> Split:
    """One verified IDX pair as tensors: pixels in [0, 1] (the values torchvision's MNIST gives,
    without importing torchvision, which costs every process seconds)."""
    prefix = raw_dir(root) / ("train" if train else "t10k")
    images = read_idx(Path(f"{prefix}-images-idx3-ubyte").read_bytes())
    labels = read_idx(Path(f"{prefix}-labels-idx1-ubyte").read_bytes())
    pixels = torch.from_numpy(images.reshape(len(images), -1).copy()).to(torch.float32).div_(255.0)
    labels = torch.from_numpy(labels.copy()).to(torch.int64)
    return Split(pixels, labels, torch.arange(len(labels)), "train" if train else "test")


def load_mnist(config, data_dir: str | os.PathLike | None = None, *, download: bool = True,
               log=None) -> MNISTData:
    """Load the training and evaluation splits for ``config`` (a :class:`TrainConfig`).

    Default (``eval_set="holdout"``) is the lab's protocol: a seeded 80/20 split of the 60k file.
    With ``eval_set="test"`` the whole 60k file trains and the official 10k set evaluates.
    """
    root = prepare_mnist(data_dir, download=download, log=log)
    full = _read_file(root, train=True)
    if config.eval_set == "test":
        train, held = full, _read_file(root, train=False)
    else:
        n_train = int(config.train_fraction * len(full))
        if n_train < 1 or n_train >= len(full):
            raise DataError(f"train_fraction={config.train_fraction} leaves no images on one side.")
        order = torch.randperm(len(full), generator=seeds.generator(config.seed, "split"))
        train = _take(full, order[:n_train])
        held = _take(full, order[n_train:])
    if getattr(config, "binarize", False):
        held = binarize_split(held, config.seed)
    train = train.subset(config.train_limit)
    held = held.subset(config.eval_limit)
    check_batch_size(config, len(train))
    return MNISTData(train=train, eval=held)


def check_batch_size(config, n_train: int, what: str = "the training set") -> None:
    """Refuse a batch larger than the training images of ``config`` (a :class:`TrainConfig`):
    every epoch would be one short batch."""
    if config.batch_size > n_train:
        from vae_core.errors import ConfigError

        raise ConfigError(f"batch_size={config.batch_size} is larger than {what}, which holds "
                          f"{n_train} images. Use a batch size of at most {n_train}, or more "
                          "images.")


def binarize_split(split: Split, seed: int) -> Split:
    """A fixed Bernoulli draw of every pixel (the binarized-MNIST evaluation set for ``seed``).

    Drawn on the whole split before any ``eval_limit`` so a subset is a prefix of the full set.
    """
    g = seeds.generator(seed, "binarize_eval")
    return Split(torch.bernoulli(split.images, generator=g), split.labels, split.ids, split.source)


def _take(split: Split, idx: torch.Tensor) -> Split:
    return Split(split.images[idx], split.labels[idx], split.ids[idx], split.source)
