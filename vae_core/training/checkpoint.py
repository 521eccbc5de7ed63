"""Checkpoints: tensors and plain data only, written atomically, read with ``weights_only=True``.

A checkpoint holds everything needed to continue bit-identically: model and optimizer state,
both random generators, the config and the loss history.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError
from vae_core.files import atomic_write_bytes
from vae_core.model.network import VAE

FORMAT = "vae-mnist-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialize to memory, then publish atomically (the previous file survives any failure)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; any problem becomes one :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Train first, or check the path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"Refused to load {path}: it contains Python objects that could run code, not only "
                "tensors and plain data. Only load checkpoints written by vae-mnist.") from None
        raise CheckpointError(f"Checkpoint {path} is corrupt ({exc}). Delete it and retrain, or "
                              "restore a good copy.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {path} is truncated or corrupt "
                              f"({type(exc).__name__}). Delete it and retrain, or restore a good "
                              "copy.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vae-mnist checkpoint.")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"Checkpoint {path} has format version {version}, newer than this "
                              f"vae-mnist understands ({FORMAT_VERSION}). Upgrade vae-mnist.")
    return state


def config_of(state: dict[str, Any], path: str | Path = "checkpoint") -> TrainConfig:
    try:
        return TrainConfig.from_dict(state["config"], source=str(path))
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"Checkpoint {path} has no valid config ({exc}).") from None


def model_from_state(state: dict[str, Any], path: str | Path = "checkpoint") -> VAE:
    """Rebuild the VAE stored in a checkpoint, on CPU, in eval mode."""
    config = config_of(state, path)
    model = VAE.from_config(config)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"Checkpoint {path} does not match its own architecture "
                              f"({str(exc).splitlines()[0]}).") from None
    return model.eval()


def load_model(path: str | Path) -> tuple[VAE, TrainConfig]:
    state = load_checkpoint(path)
    return model_from_state(state, path), config_of(state, path)
