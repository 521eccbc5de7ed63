"""Shared fixtures. MNIST comes from $VAE_MNIST_DIR (make test points it at ../shared/mnist);
the decompressed cache goes to a per-session temp folder so tests never touch ~/.cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vae_core.config import TrainConfig


def _mnist_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    env = os.environ.get("VAE_MNIST_DIR")
    path = Path(env) if env else here.parent / "shared" / "mnist"
    if not path.is_dir():
        pytest.skip(f"MNIST not found at {path}; set VAE_MNIST_DIR")
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _mnist_dir()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the decompressed MNIST cache out of the user's home during tests."""
    old = os.environ.get("VAE_MNIST_HOME")
    os.environ["VAE_MNIST_HOME"] = str(tmp_path_factory.mktemp("mnist-home"))
    yield
    if old is None:
        os.environ.pop("VAE_MNIST_HOME", None)
    else:
        os.environ["VAE_MNIST_HOME"] = old


@pytest.fixture(scope="session")
def small_config() -> TrainConfig:
    """A few-second configuration on a subset: 2,000 train / 500 held-out images."""
    return TrainConfig(epochs=2, train_limit=2000, eval_limit=500, device="cpu")


@pytest.fixture(scope="session")
def small_data(mnist_dir, small_config):
    from vae_core.data import load_mnist

    return load_mnist(small_config, mnist_dir)
