"""Run folders: created, locked, and replaced only once their successor has finished.

A run folder shows one finished run, or nothing. A run being built (a new one, an
``--overwrite``, or a ``--resume``) lives in ``RUN/.incomplete/`` until it has succeeded::

    RUN/                config.json checkpoint.pt summary.json tables/ figures/ (+ metrics.json,
                        report.html, ... added later by `evaluate` / `report`): the finished run
    RUN/.lock           whoever works on the folder (pid, host, start time)
    RUN/.incomplete/    the run being built: its checkpoint.pt during training (what `--resume`
                        continues from), then its tables, figures, config.json, summary.json.
                        `evaluate` and `report` never look inside.

Only then is it swapped in, each step one rename inside ``RUN`` (so on the same file system)::

    1. .incomplete -> .complete          the commit point: from here on the new run wins
    2. every entry of the old run -> .replaced/
    3. .complete -> .installing          marks step 2 as done
    4. every entry of .installing -> RUN/
    5. remove the empty .installing, then .replaced

A crash before step 1 leaves the old run untouched (and ``.incomplete/`` resumable); a crash
after it leaves the new run complete in ``.complete/`` or ``.installing/`` + ``RUN/``, and the
old one in ``.replaced/`` + ``RUN/``. Whoever takes the lock next (:func:`run_lock`) finishes
the swap first (:func:`recover`). RELIABILITY.md says how to do it by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vae_core.errors import RunDirError, option
from vae_core.files import atomic_open, os_problem, writing

CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
STAGING = ".incomplete"  # the run being built
COMMITTED = ".complete"  # the built run, being swapped in (step 2)
INSTALLING = ".installing"  # the built run, being moved into place (step 4)
REPLACED = ".replaced"  # the old run's entries, deleted once the swap is done
SUPERSEDED = ".superseded"  # an earlier .incomplete/ while a new build has not trained an epoch
# Entries of a run folder that are not part of a run.
INTERNAL = frozenset({LOCK, STAGING, COMMITTED, INSTALLING, REPLACED, SUPERSEDED})


# ----------------------------------------------------------------------------- the folder
def prepare_run_dir(run_dir: str | Path) -> Path:
    """Create ``run_dir`` if needed and check that it is a writable folder."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a folder. Choose another folder "
                          f"({option('run_dir')}).")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        why, fix = os_problem(run_dir, exc)
        raise RunDirError(f"Run folder {run_dir} is not writable: {why}. {fix} "
                          f"({option('run_dir')}).") from None
    return run_dir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir/.lock`` so a second run on the same folder refuses instead of clobbering.

    Whoever takes the lock first finishes a swap that a crash interrupted (:func:`recover`).
    """
    lock = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                other = json.loads(lock.read_text())
            except (OSError, ValueError):
                other = {}
            stale = other.get("host") == me["host"] and not _pid_alive(int(other.get("pid", -1)))
            if stale:
                lock.unlink(missing_ok=True)
                continue
            raise RunDirError(
                f"Run folder {run_dir} is in use by another run (pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(other.get('started', 0)))})."
                f" Wait for it to finish, or use another folder ({option('run_dir')}). If no "
                f"such run exists, delete {lock}.") from None
        except PermissionError:
            raise RunDirError(f"Cannot lock run folder {run_dir}: it is not writable. Give "
                              "yourself write access to it, or copy it to a folder you can "
                              "write to.") from None
        except OSError as exc:
            why, fix = os_problem(lock, exc)
            raise RunDirError(f"Cannot lock run folder {run_dir}: {why}. {fix}.") from None
    else:
        raise RunDirError(f"Could not lock run folder {run_dir}.")
    try:
        with writing(run_dir), os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        with writing(run_dir):
            recover(run_dir)
        yield
    finally:
        lock.unlink(missing_ok=True)


def settle(folder: str | Path) -> None:
    """Finish an interrupted swap in ``folder`` (under its lock) before reading it unlocked."""
    folder = Path(folder)
    if any((folder / name).exists() for name in (COMMITTED, INSTALLING, REPLACED, SUPERSEDED)):
        try:
            with run_lock(folder):
                pass
        except PermissionError:
            pass  # a folder we may not write to: read it as it is


# ----------------------------------------------------------------------------- what it holds
def finished_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of the finished run the folder shows, or None: the one test of a finished
    run folder (``vae-mnist run``, a sweep's configurations, ``evaluate``, ``report``, Load
    Model). A build reaches the top of the folder only with its swap; a folder of an earlier
    sweep, which trained in place, may show an unfinished training there, which a resume
    continues."""
    path = run_dir / CHECKPOINT
    return path if _is_file(path) else None


def unfinished_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of a run being built (an interrupted training), if there is one."""
    path = run_dir / STAGING / CHECKPOINT
    return path if _is_file(path) else None


def file_identity(path: Path) -> tuple[int, int, int] | None:
    """Changes whenever the file is rewritten (atomic writes give it a new inode)."""
    try:
        st = path.stat()
    except OSError:  # missing, or a path through a file or an unreadable folder
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def describe_checkpoint(path: Path) -> str:
    """``"epoch 3 of 30"`` for a readable checkpoint, else ``"the last finished epoch"``."""
    from vae_core.errors import CheckpointError
    from vae_core.training.checkpoint import load_checkpoint

    try:
        state = load_checkpoint(path)
        return f"epoch {int(state['epoch'])} of {int(state['config']['epochs'])}"
    except (CheckpointError, KeyError, TypeError, ValueError):
        return "the last finished epoch"


# ----------------------------------------------------------------------------- building a run
@contextlib.contextmanager
def staging(run_dir: Path, *, continue_unfinished: bool = False,
            seed_checkpoint: Path | None = None) -> Iterator[Path]:
    """Yield the folder to build the new run in (``run_dir/.incomplete``); swap it in when the
    body succeeds. Call it under :func:`run_lock`.

    ``continue_unfinished``: build on in the existing ``.incomplete/`` (``--resume`` of an
    interrupted training). Otherwise a new ``.incomplete/`` is made, holding a copy of
    ``seed_checkpoint`` if given (``--resume`` of a finished run, to train longer).

    If the body fails or is interrupted, the finished run is untouched. ``.incomplete/`` is
    kept when this call trained at least one epoch into it (that progress is what ``--resume``
    continues); otherwise the folder is restored to exactly what it was.
    """
    stage = run_dir / STAGING
    if continue_unfinished:
        yield stage  # on failure: what it holds now is its last state, or a later epoch
        publish(run_dir)
        return
    superseded = run_dir / SUPERSEDED
    if stage.exists():
        with writing(run_dir):
            os.replace(stage, superseded)  # restored if this build trains no epoch
    baseline = None
    try:
        with writing(run_dir):
            stage.mkdir()
        if seed_checkpoint is not None:
            with open(seed_checkpoint, "rb") as src, atomic_open(stage / CHECKPOINT) as dst:
                shutil.copyfileobj(src, dst)
            baseline = file_identity(stage / CHECKPOINT)
        yield stage
    except BaseException:
        if file_identity(stage / CHECKPOINT) not in (None, baseline):
            _remove(superseded)  # this build trained: its epochs are kept for --resume
        else:
            _remove(stage)
            if superseded.exists():
                os.replace(superseded, stage)
        raise
    publish(run_dir)


def publish(run_dir: Path) -> None:
    """Swap the finished build in ``run_dir/.incomplete`` in for the run in ``run_dir``."""
    stage = run_dir / STAGING
    with _interrupts_held(), writing(run_dir):
        _remove(run_dir / SUPERSEDED)
        for folder, _, _ in os.walk(stage):
            _fsync_dir(Path(folder))
        os.replace(stage, run_dir / COMMITTED)  # the commit point
        _fsync_dir(run_dir)
        finish_swap(run_dir)


def finish_swap(run_dir: Path) -> bool:
    """Carry out (or finish, after a crash) steps 2-5 of the swap; True if there was one.

    Every step can be repeated: running this again after a crash at any point ends in the same
    folder as an uninterrupted swap.
    """
    committed, installing, replaced = (run_dir / n for n in (COMMITTED, INSTALLING, REPLACED))
    if not (committed.is_dir() or installing.is_dir()):
        _remove(replaced)  # the rest of a finished swap (or nothing)
        return False
    if committed.is_dir():
        replaced.mkdir(exist_ok=True)
        for entry in sorted(run_dir.iterdir()):
            if entry.name not in INTERNAL:
                _move(entry, replaced / entry.name)
        _fsync_dir(replaced)
        _fsync_dir(run_dir)
        os.replace(committed, installing)
        _fsync_dir(run_dir)
    for entry in sorted(installing.iterdir()):
        _move(entry, run_dir / entry.name)
    _fsync_dir(run_dir)
    installing.rmdir()
    _fsync_dir(run_dir)
    _remove(replaced)
    return True


def recover(run_dir: Path) -> None:
    """Bring a folder that a crash left mid-way back to one run (call it under the lock)."""
    finish_swap(run_dir)
    superseded = run_dir / SUPERSEDED
    if superseded.exists():
        if unfinished_checkpoint(run_dir) is not None:
            _remove(superseded)  # the newer build had trained an epoch: it replaces the older
        else:
            _remove(run_dir / STAGING)
            os.replace(superseded, run_dir / STAGING)


def clear_outputs(stage: Path) -> None:
    """Remove everything from a build but its checkpoint (outputs of an earlier attempt)."""
    for entry in stage.iterdir():
        if entry.name != CHECKPOINT:
            _remove(entry)


# ----------------------------------------------------------------------------- helpers
def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _move(src: Path, dst: Path) -> None:
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)  # only a leftover of this same swap can be there
    os.replace(src, dst)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _interrupts_held():
    """Hold Ctrl-C while the swap runs (milliseconds): the run is then published whole."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    if previous is None:
        yield
        return
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
