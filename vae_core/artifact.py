"""The trained model as one small picklable object, for KNIME's pickled-object ports.

KNIME pickles an output object in the Train node's Python process and unpickles it in every
downstream node's fresh process *before* their script runs. So the class must live in an
installed module (here), and its pickle holds plain data only: a format tag, the config dict,
the weights as ``torch.save`` bytes (read back with ``weights_only=True``) and the loss history.
Nothing in it can run code when it is loaded.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from typing import Any

import pandas as pd
import torch

from .checkpoint import model_from_state
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, VAEError
from .model import VAE
from .tables import loss_table

FORMAT = "vae-mnist-model"
FORMAT_VERSION = 1
_DAMAGED = "Re-run the Train VAE node to get a fresh model object."


class TrainedVAE:
    """A trained VAE: config, weights and loss history, safe to pickle and to unpickle."""

    def __init__(self, config: TrainConfig | dict[str, Any], weights: bytes,
                 history: list[dict[str, Any]]) -> None:
        cfg = config.to_dict() if isinstance(config, TrainConfig) else config
        self.__setstate__({"format": FORMAT, "format_version": FORMAT_VERSION, "config": cfg,
                           "weights": weights, "history": history})

    @classmethod
    def from_model(cls, model: VAE, config: TrainConfig, history: list[dict[str, Any]]
                   ) -> TrainedVAE:
        """Wrap a trained model (its weights are copied to CPU)."""
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
        return cls(config, buffer.getvalue(), history)

    # --------------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": dict(self._config), "weights": self._weights,
                "history": [dict(row) for row in self._history]}

    def __setstate__(self, state: Any) -> None:
        """Validate while unpickling: a foreign or newer object fails with one clear message."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"This is not a vae-mnist model object. {_DAMAGED}")
        version = state.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"The model object has format version {version!r}, newer than "
                                  f"this vae_core understands ({FORMAT_VERSION}). Install the "
                                  "same vae_core version in every Python environment KNIME uses.")
        try:
            config = TrainConfig.from_dict(dict(state["config"]), source="the model object")
        except (TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"The model object has no valid config ({exc}). {_DAMAGED}") \
                from None
        weights, history = state.get("weights"), state.get("history")
        if not isinstance(weights, bytes) or not weights:
            raise CheckpointError(f"The model object has no weights. {_DAMAGED}")
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise CheckpointError(f"The model object's loss history is damaged. {_DAMAGED}")
        self._config = config.to_dict()
        self._weights = weights
        self._history = [dict(r) for r in history]
        self._cache: dict[str, VAE] = {}

    # --------------------------------------------------------------------------- access
    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self._config, source="the model object")

    @property
    def history(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._history]

    def loss_table(self) -> pd.DataFrame:
        return loss_table(self._history)

    def model(self, device: str | torch.device = "cpu") -> VAE:
        """The torch model in eval mode on ``device`` (weights read with ``weights_only=True``)."""
        key = str(device)
        if key not in self._cache:
            try:
                weights = torch.load(io.BytesIO(self._weights), map_location="cpu",
                                     weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile,
                    ValueError) as exc:
                raise CheckpointError(f"The model object's weights are damaged or unsafe "
                                      f"({type(exc).__name__}). {_DAMAGED}") from None
            model = model_from_state({"config": self._config, "model": weights}, "model object")
            self._cache[key] = model.to(device).eval()
        return self._cache[key]

    def __repr__(self) -> str:
        c = self._config
        last = self._history[-1] if self._history else {}
        loss = f", held-out loss {last['test_loss']:.2f}" if "test_loss" in last else ""
        return (f"TrainedVAE(latent_dim={c['latent_dim']}, hidden_dim={c['hidden_dim']}, "
                f"beta={c['beta']:g}, epochs={len(self._history)}{loss})")


def as_trained_vae(obj: Any, what: str = "model input") -> TrainedVAE:
    """Check that a node's object input really is a model from the Train VAE node."""
    if isinstance(obj, TrainedVAE):
        return obj
    raise VAEError(f"The {what} must be the model object from the Train VAE node, got "
                   f"{type(obj).__name__}. Connect the Train VAE node's object output here.")
