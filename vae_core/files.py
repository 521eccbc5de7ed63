"""Atomic file writes: a crash or error mid-write never destroys the previous version; an
operating-system error while writing is one :class:`WriteError` that names the user's path."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from vae_core.errors import WriteError


def _default_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give (mkstemp alone gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _default_mode()


# ----------------------------------------------------------------------------- OS errors
def _existing_ancestor(path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists (a file or a folder)."""
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            if candidate.exists() or candidate.is_symlink():
                return candidate
    return Path(path.anchor or ".")


def os_problem(path: str | os.PathLike, exc: OSError) -> tuple[str, str]:
    """Why writing ``path`` failed with ``exc``, and the fix: two phrases for one message.

    Named from the user's path, never the temporary file the error may carry.
    """
    path = Path(path)
    above = _existing_ancestor(path.parent)
    if above.exists() and not above.is_dir():
        return f"{above} is a file, not a folder", "Choose another location, or move that file away"
    if exc.errno == errno.EEXIST and path.exists() and not path.is_dir():
        return f"{path} is a file, not a folder", "Choose another location, or move that file away"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
        folder = path if path.is_dir() else above
        return (f"{folder} is not writable ({why})",
                "Give yourself write access to it, or choose a folder you can write to")
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return ("the disk is full (no space left on device)",
                "Free some space, or choose a folder on another disk")
    if exc.errno == errno.EISDIR:
        return f"{path} is a folder", "Give a file name, or move that folder away"
    if exc.errno == errno.ENAMETOOLONG:
        return "the name is too long", "Choose a shorter path"
    return (exc.strerror or str(exc) or type(exc).__name__), "Check the path, or choose another one"


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """One :class:`WriteError` for an OS error while writing ``path``."""
    why, fix = os_problem(path, exc)
    return WriteError(f"Cannot write {path}: {why}. {fix}.")


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OS error in the block (which writes ``path``) into one :class:`WriteError`."""
    try:
        yield
    except OSError as exc:
        raise write_error(path, exc) from None


def make_folder(path: str | os.PathLike, *, for_path: str | os.PathLike | None = None) -> Path:
    """``mkdir -p`` with one :class:`WriteError` (naming ``for_path``, the file to be written
    there, if given) instead of a raw OS error."""
    path = Path(path)
    named = path if for_path is None else Path(for_path)
    with writing(named):
        path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise write_error(named, FileExistsError(errno.EEXIST, "File exists"))
    return path


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for binary writing; rename it over ``path`` on success.

    If the body raises, the temp file is removed and ``path`` keeps its old content. An OS
    error (the folder not writable, a file in the way, a full disk) is one :class:`WriteError`.
    """
    path = Path(path)
    if path.is_dir():
        raise write_error(path, IsADirectoryError(errno.EISDIR, "Is a directory"))
    make_folder(path.parent, for_path=path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else _MODE)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike, writer: Callable[[BinaryIO], object]) -> None:
    """Let ``writer`` fill a binary file handle, then publish it atomically at ``path``."""
    with atomic_open(path) as fh:
        writer(fh)
