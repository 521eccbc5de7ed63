"""Shared by the KNIME step tests (``test_knime_steps*.py``): the flow-variable parameters and the
model object and image table their fixtures (``conftest.py``) are built from."""

from __future__ import annotations

import pandas as pd
import torch

from vae_core.config import TrainConfig
from vae_core.model.network import VAE
from vae_core.nodes.steps import params_from_flow_variables
from vae_core.outputs.tables import image_table
from vae_core.training.model_file import model_record

HISTORY = [{"epoch": 1, "train_loss": 200.0, "train_recon": 190.0, "train_kl": 10.0,
            "test_loss": 180.0, "test_recon": 171.0, "test_kl": 9.0, "seconds": 0.5}]
PARAMS = params_from_flow_variables({"device": "cpu"})


def model_object() -> dict:
    """A model record, as the Train VAE node puts it on its object port."""
    torch.manual_seed(1)
    config = TrainConfig(latent_dim=3, hidden_dim=32, seed=4, device="cpu")
    return model_record(VAE(3, 32), config, HISTORY)


def images_table() -> pd.DataFrame:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 784), generator=g) / 255.0  # whole grey levels
    return image_table(torch.arange(100, 112), "test", torch.arange(12) % 10, images)
