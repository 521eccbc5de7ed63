"""What a resume may continue: the one check of a resumed run's settings against its checkpoint.

Both ways into a resume use it: a run folder (``vae-mnist run --resume``, checked before anything
changes) and :func:`vae_core.training.loop.train` itself, so a library call that resumes a checkpoint is
held to the same rule with the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vae_core.config import RESUME_MAY_CHANGE, RESUME_MUST_MATCH, TrainConfig, epochs_problem
from vae_core.errors import CheckpointError, ConfigError, VAEError
from vae_core.training.checkpoint import config_of


def epochs_done(state: dict[str, Any], path: str | Path) -> int:
    """How many epochs the checkpoint ``state`` (read from ``path``) has trained."""
    try:
        return int(state["epoch"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"Checkpoint {path} has no valid epoch count. Delete it and "
                              "retrain, or restore a good copy.") from None


def resume_config(state: dict[str, Any], path: str | Path, given: Mapping[str, Any],
                  sources: Mapping[str, str] | None = None, *,
                  error: type[VAEError] = ConfigError) -> TrainConfig:
    """The settings of a resumed run: the checkpoint's, with the given ones that may change.

    One ``error`` names every given setting that contradicts the checkpoint (with both values),
    or an epoch count that is smaller than what was trained or that a learning rate schedule
    fixes. ``sources`` says how each given setting was given (``"--latent-dim 5"``); a setting
    without one reads ``latent_dim=5``. ``error``: :class:`ConfigError` where the caller's
    settings are at fault (a run folder), :class:`CheckpointError` where the checkpoint does not
    match the run (``train``).
    """
    saved, done = config_of(state, path), epochs_done(state, path)
    sources = sources or {}

    def label(name: str) -> str:
        return sources.get(name, f"{name}={given[name]!r}")

    wanted = TrainConfig.from_dict({**saved.to_dict(), **given})
    clashes = [f"{n}: checkpoint {getattr(saved, n)!r}, {label(n)}" for n in RESUME_MUST_MATCH
               if n in given and getattr(wanted, n) != getattr(saved, n)]
    if clashes:
        raise error(
            f"Cannot resume {path}: " + "; ".join(clashes) + ". --resume takes every setting "
            f"from the checkpoint; only {' and '.join(RESUME_MAY_CHANGE)} may change. Leave "
            f"{'this setting' if len(clashes) == 1 else 'these settings'} out, or start a new "
            "run with --overwrite or another --run-dir.")
    problem = epochs_problem(saved, wanted.epochs, done) if "epochs" in given else None
    if problem:
        raise error(f"Cannot resume {path} with {label('epochs')}: {problem}. Leave epochs "
                    f"out to keep {saved.epochs}, or start a new run with --overwrite or "
                    "another --run-dir.")
    return wanted
