"""A trained model as plain data: what KNIME's object port carries and what a model file holds.

KNIME unpickles a node's input objects *before* its script runs, when only the Python
environment and the workflow folder are importable, so vae_core (bundled in the workflow's data
area) is not yet on ``sys.path``. The port therefore carries a plain ``dict`` of str / int /
float / list / dict values and CPU tensors, which unpickles with torch alone; the node script
turns it back into a model (:class:`TrainedVAE`) once the bundle is importable.

A model file (Save Model node) is that same dict written with ``torch.save``: it loads with
``torch.load(weights_only=True)``, so opening one never runs code. Load Model also reads a
``vae-mnist run`` checkpoint (or its run folder), so CLI models feed the apply workflow.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError, VAEError, option
from vae_core.evaluation.scores import REFERENCE_KEY, Reference
from vae_core.files import atomic_write_bytes
from vae_core.model.network import VAE
from vae_core.outputs.tables import LOSS_COLUMNS, loss_table
from vae_core.training.checkpoint import FORMAT as CHECKPOINT_FORMAT
from vae_core.training.checkpoint import (
    check_finite,
    config_of,
    load_checkpoint,
    model_from_state,
    read_torch_file,
)
from vae_core.training.rundir import CHECKPOINT, finished_checkpoint

FORMAT = "vae-mnist-model"
FORMAT_VERSION = 1
_RETRAIN = "Re-run the Train VAE node (or Load Model) to get a fresh model."


def model_record(model: VAE, config: TrainConfig, history: list[dict[str, Any]],
                 data: dict[str, Any] | None = None, reference: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The plain-data form of a trained model (weights copied to the CPU), with its reference
    scores (:mod:`vae_core.evaluation.scores`) when it has them."""
    weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    rows = [{c: row[c] for c in LOSS_COLUMNS if c in row} for row in history]
    record = {"format": FORMAT, "format_version": FORMAT_VERSION,
              "summary": _summary(config.to_dict(), rows), "config": config.to_dict(),
              "model": weights, "history": rows, "data": dict(data or {})}
    if reference is not None:
        record[REFERENCE_KEY] = reference
    return record


def _summary(config: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """One line for KNIME's port view (it shows the first 1000 characters of ``str(obj)``)."""
    last = history[-1] if history else {}
    held = f", held-out loss {last['test_loss']:.2f}" if "test_loss" in last else ""
    return (f"vae-mnist model: latent_dim={config['latent_dim']}, "
            f"hidden_dim={config['hidden_dim']}, beta={config['beta']:g}, "
            f"{len(history)} epochs{held}")


class TrainedVAE:
    """A validated model record: its config, loss history and the torch model."""

    def __init__(self, record: dict[str, Any], model: VAE) -> None:
        self.record = record
        self._model = model

    @classmethod
    def from_record(cls, obj: Any, what: str = "model input") -> TrainedVAE:
        """Check that ``obj`` is a model record; rebuild the model. One clear error otherwise."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
            raise VAEError(f"The {what} must be the model from a Train VAE or Load Model node, "
                           f"got {got!r}. Connect that node's object output here.")
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"The {what} has model format version {version!r}, newer than "
                                  f"this vae_core understands ({FORMAT_VERSION}). Rebuild the "
                                  "model with this workflow, or use the workflow that made it.")
        try:
            config = TrainConfig.from_dict(dict(obj["config"]), source=f"the {what}")
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"The {what} has no valid config ({exc}). {_RETRAIN}") from None
        weights, history = obj.get("model"), obj.get("history")
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                    for v in weights.values()):
            raise CheckpointError(f"The {what} has no weights. {_RETRAIN}")
        check_finite(weights, f"The {what}")
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise CheckpointError(f"The {what}'s loss history is damaged. {_RETRAIN}")
        model = model_from_state({"config": config.to_dict(), "model": weights}, f"the {what}")
        Reference.from_data(obj.get(REFERENCE_KEY), f"the {what}")  # damaged: one clear error
        return cls(obj, model)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.record["config"], source="the model")

    @property
    def reference(self) -> dict[str, Any] | None:
        """The held-out neg-ELBO quantiles (None: a model from before they were stored)."""
        return self.record.get(REFERENCE_KEY)

    @property
    def history(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.record["history"]]

    def loss_table(self) -> pd.DataFrame:
        return loss_table(self.history)

    def model(self, device: str | torch.device = "cpu") -> VAE:
        """The torch model in eval mode on ``device``."""
        return self._model.to(device).eval()

    def same_model(self, other: TrainedVAE) -> bool:
        """Same settings and bit-identical weights (history timings may differ)."""
        a, b = self.record["model"], other.record["model"]
        return (self.record["config"] == other.record["config"] and a.keys() == b.keys()
                and all(torch.equal(a[k], b[k]) for k in a))


# ----------------------------------------------------------------------------- model files
def resolve_model_path(value: str, base: str | Path) -> Path:
    """A model path from a workflow variable (checked by ``steps.params_from_flow_variables``):
    relative paths resolve against ``base`` (the workflow's data area), ``~`` is the home
    folder."""
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else Path(base) / path


def _file_bytes(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return buffer.getvalue()


def save_model_file(path: str | Path, trained: TrainedVAE, *, overwrite: bool = False) -> str:
    """Write the model to ``path`` atomically; returns "written", "unchanged" or "replaced".

    An existing file holding the same model is left as it is; one holding a different model is
    replaced only with ``overwrite``; a file that is not a vae-mnist model is never replaced.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"model_path {path} is a folder; give a file name such as "
                          f"{path / 'vae_mnist_model.pt'}.")
    status = "written"
    if path.exists():
        old = _saved_model(path)
        if isinstance(old, TrainedVAE) and old.same_model(trained):
            return "unchanged"
        if not overwrite:
            held = (f"already holds a different model ({old.record['summary']}); it was"
                    if isinstance(old, TrainedVAE) else f"holds a model that cannot be used: {old}"
                    " It was")
            raise CheckpointError(
                f"{path} {held} left untouched. Set the workflow variable overwrite_model to 1 "
                "to replace it, or choose another model_path.")
        status = "replaced"
    atomic_write_bytes(path, _file_bytes(trained.record))
    return status


def _saved_model(path: Path) -> TrainedVAE | str:
    """The model of the Save Model file at ``path``, or why that file's model is unusable.
    Anything else there (a run's checkpoint, another program's file, an unreadable file) is
    never to be replaced: one :class:`CheckpointError`."""
    try:
        state = _read(path)
    except VAEError:
        state = None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        try:
            return TrainedVAE.from_record(state, "model in it")
        except VAEError as exc:
            return str(exc)  # e.g. non-finite weights: replaced only with overwrite_model
    what = ("a vae-mnist run's checkpoint (its optimizer and random states would be lost)"
            if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT
            else "not a model file written by Save Model")
    raise CheckpointError(f"{path} exists and is {what}; it was left untouched, whatever "
                          "overwrite_model says. Choose another model_path, or move that file "
                          "away.")


def _read(path: Path) -> Any:
    return read_torch_file(path, "model file")


def load_model_file(path: str | Path) -> TrainedVAE:
    """Read a model file (Save Model) or a ``vae-mnist run`` checkpoint / run folder, safely,
    and validate it; foreign, damaged, code-carrying or non-finite files are one
    :class:`CheckpointError` that says which.
    """
    path = Path(path)
    if path.is_dir():
        checkpoint = finished_checkpoint(path)
        if checkpoint is None:
            raise CheckpointError(f"{path} is a folder without {CHECKPOINT}: neither a model file "
                                  f"nor a vae-mnist run folder. Check {option('model')}.")
        path = checkpoint
    if not path.is_file():
        raise CheckpointError(f"Model file {path} does not exist. Run the workflow that saves "
                              f"the model first (Save Model), or check {option('model')}.")
    state = _read(path)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        return _record_from_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vae-mnist model file: it holds "
                              f"{_what(state)}. Check {option('model')}.")
    return TrainedVAE.from_record(state, f"model file {path}")


def _what(state: Any) -> str:
    if isinstance(state, dict):
        return f"a dict with keys {', '.join(map(str, list(state)[:4]))}" if state else "an empty dict"
    return f"a {type(state).__name__}"


def _record_from_checkpoint(path: Path) -> TrainedVAE:
    """The model of a ``vae-mnist run`` checkpoint (its optimizer state is not needed)."""
    state = load_checkpoint(path)
    try:
        columns = state["history"]
        rows = [{c: columns[c][i] for c in LOSS_COLUMNS if c in columns}
                for i in range(len(columns["epoch"]))]
    except (KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"Checkpoint {path} has a damaged loss history ({exc}).") from None
    model = model_from_state(state, path)
    record = model_record(model, config_of(state, path), rows,
                          {"from": f"vae-mnist checkpoint {path}"}, state.get(REFERENCE_KEY))
    return TrainedVAE(record, model)
