"""Shared fixtures. MNIST comes from $VAE_MNIST_DIR (make test points it at ../shared/mnist);
the decompressed cache goes to a per-session temp folder so tests never touch ~/.cache.

Without the MNIST folder the tests that need it are skipped, except under CI (``CI=true``),
where a missing folder fails the whole session at start: CI must not pass by skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vae_core.config import TrainConfig


def _mnist_path() -> Path:
    env = os.environ.get("VAE_MNIST_DIR")
    if env:
        return Path(env).expanduser().absolute()  # absolute: tests change folders
    return Path(__file__).resolve().parent.parent.parent / "shared" / "mnist"


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _missing_message(path: Path) -> str:
    return f"MNIST not found at {path}; set VAE_MNIST_DIR to the folder with the four .gz files"


def pytest_configure(config) -> None:
    path = _mnist_path()
    if _on_ci() and not path.is_dir():
        raise pytest.UsageError(f"{_missing_message(path)}. CI=true, so this fails the test "
                                "session instead of skipping the tests that need MNIST.")


def _mnist_dir() -> Path:
    path = _mnist_path()
    if not path.is_dir():
        pytest.skip(_missing_message(path))
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _mnist_dir()


@pytest.fixture(scope="session", autouse=True)
def _mnist_env():
    """Export the MNIST folder (absolute) as $VAE_MNIST_DIR for the session, so code and
    subprocesses that take no data folder read it instead of trying to download MNIST."""
    path = _mnist_path()
    old = os.environ.get("VAE_MNIST_DIR")
    if path.is_dir():
        os.environ["VAE_MNIST_DIR"] = str(path)
    yield
    if old is None:
        os.environ.pop("VAE_MNIST_DIR", None)
    else:
        os.environ["VAE_MNIST_DIR"] = old


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
