"""Checkpoints: tensors and plain data only, written atomically, read with ``weights_only=True``.

A checkpoint holds everything needed to continue bit-identically: model and optimizer state,
both random generators, the config and the loss history.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings
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


def read_torch_file(path: Path, kind: str) -> Any:
    """``torch.load(weights_only=True)`` of a ``kind`` ("checkpoint", "model file"), with one
    :class:`CheckpointError` saying which problem it is: a file that carries code, or one that
    is not a ``kind`` at all (damaged, truncated, another format). Library warnings are kept
    off stderr: the error is the one message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file breaks the unpickler in many ways (KeyError, ...)
        problem = exc
    if isinstance(problem, PermissionError):
        raise CheckpointError(f"Cannot read {kind} {path}: {problem.strerror}. Give yourself "
                              "read access to it, or copy it somewhere you can read it.")
    code = _globals_named(path) if isinstance(problem, pickle.UnpicklingError) else None
    if code:
        raise CheckpointError(
            f"Refused to load {path}: it is a pickle that carries Python objects ({code}) that "
            f"could run code when loaded, not only tensors and plain data. Only load {kind}s "
            "written by vae-mnist.")
    raise CheckpointError(f"{path} is not a vae-mnist {kind}: it is damaged, truncated, or a "
                          f"file of another format ({_short(problem)}). Restore a good copy, or "
                          "check the path.")


def _short(exc: BaseException) -> str:
    """The exception in a few words (torch's own messages run over many lines)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if type(exc) is pickle.UnpicklingError or len(text) > 80:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _allowed_globals() -> set[str]:
    """What ``weights_only=True`` lets a pickle name (torch's list; empty if it moved)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - a private helper of torch: without it, name them all
        return set()


def _globals_named(path: Path) -> str | None:
    """The Python objects a well-formed pickle (a torch zip's ``data.pkl``, or the pickles of a
    legacy torch file) names, or None if it names none or is not a well-formed pickle."""
    try:
        data = path.read_bytes()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
                data = archive.read(pickles[0]) if pickles else b""
    except (OSError, zipfile.BadZipFile, IndexError, KeyError, RuntimeError):
        return None
    stream, names, complete = io.BytesIO(data), [], 0
    while stream.tell() < len(data) and complete < 8:  # a legacy file: pickles, then raw data
        found: list[str] = []
        try:
            strings: list[str] = []
            for op, arg, _ in pickletools.genops(stream):
                if isinstance(arg, str):
                    strings.append(arg)
                if op.name == "GLOBAL" or op.name == "INST":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL":
                    found.append(".".join(strings[-2:]) if len(strings) >= 2 else "?")
        except Exception:  # noqa: BLE001 - not a well-formed pickle: damaged, not dangerous
            if not complete:
                return None
            break  # the raw tensor data after a legacy file's pickles
        names += found
        complete += 1
    unique = [n for n in dict.fromkeys(names) if n not in _allowed_globals()]
    if not unique:  # only what torch's safe loader allows: the failure was damage, not code
        return None
    return ", ".join(unique[:3]) + (", ..." if len(unique) > 3 else "")


def check_finite(weights: Any, what: str) -> None:
    """Refuse weights holding NaN or inf: such a model turns every image into NaN pixels."""
    if not isinstance(weights, dict):
        return
    bad = [k for k, v in weights.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{what} holds non-finite weights (NaN or infinity in "
                              f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): the model "
                              "is broken, e.g. by a training that diverged. Use another model, or "
                              "train it again with a lower learning rate.")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely; any problem becomes one :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Train first, or check the path.")
    state = read_torch_file(path, "checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vae-mnist checkpoint.")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"Checkpoint {path} has format version {version}, newer than this "
                              f"vae-mnist understands ({FORMAT_VERSION}). Upgrade vae-mnist.")
    check_finite(state.get("model"), f"Checkpoint {path}")
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
