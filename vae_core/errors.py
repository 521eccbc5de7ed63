"""The project's own error types.

Every problem a user can cause or fix (bad data, bad settings, bad checkpoint, busy run folder)
is raised as a :class:`VAEError` subclass with one message that says what is wrong and what to
do. The CLI prints that message without a traceback; a KNIME node fails with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class VAEError(Exception):
    """A user-facing error: the message names the problem and the fix."""


class DataError(VAEError):
    """MNIST files are missing, damaged, or cannot be obtained."""


class ConfigError(VAEError):
    """A hyperparameter or option has an invalid value."""


class CheckpointError(VAEError):
    """A checkpoint cannot be read, is unsafe, or does not match the run."""


class TrainingError(VAEError):
    """Training cannot go on (for example, the loss became NaN or infinite)."""


class RunDirError(VAEError):
    """The run folder cannot be used (not writable, in use by another run, ...)."""


class TableError(VAEError):
    """An input table does not have the expected columns or values."""


class WriteError(VAEError):
    """A file or folder cannot be written: no permission, a file in the way, a full disk."""


# ----------------------------------------------------------------------------- wording
# How the user names each path in messages. The CLI's flags by default; a KNIME node step names
# its workflow variable instead (:func:`named_by`), so the same check speaks both languages.
CLI_NAMES = {"run_dir": "--run-dir", "out": "--out", "model": "the model file argument",
             "data_dir": "--data-dir"}
_NAMES: ContextVar[dict[str, str]] = ContextVar("vae_core_names", default=CLI_NAMES)


def option(key: str) -> str:
    """How the user sets the path ``key`` ("run_dir", "out", "model") where the code runs now."""
    return _NAMES.get()[key]


@contextlib.contextmanager
def named_by(**names: str) -> Iterator[None]:
    """Within the block, messages name each path by ``names`` (e.g. a workflow variable)."""
    token = _NAMES.set({**_NAMES.get(), **names})
    try:
        yield
    finally:
        _NAMES.reset(token)
