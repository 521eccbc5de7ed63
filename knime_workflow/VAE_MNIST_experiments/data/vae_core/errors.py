"""The project's own error types.

Every problem a user can cause or fix (bad data, bad settings, bad checkpoint, busy run folder)
is raised as a :class:`VAEError` subclass with one message that says what is wrong and what to
do. The CLI prints that message without a traceback; a KNIME node fails with it.
"""


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
