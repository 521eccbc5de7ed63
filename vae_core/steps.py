"""One function per KNIME node: plain data in (flow-variable dict, DataFrames, model object),
DataFrames + PNG bytes out.

The scripts in ``nodes/`` only move data between ``knime.scripting.io`` and these functions,
so all the logic is testable without KNIME. Tables come from :mod:`vae_core.tables` (fresh
RangeIndex → unique RowIDs, KNIME-safe dtypes); figures from :mod:`vae_core.plots`.
Downstream nodes draw their random picks from the *model's* seed, exactly like
:func:`vae_core.pipeline.lab_results`, so the workflow reproduces ``vae-mnist run``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from . import pipeline, plots, tables
from .artifact import TrainedVAE, as_trained_vae
from .config import TrainConfig
from .data import Split, load_mnist
from .errors import ConfigError, TableError
from .model import VAE
from .train import resolve_device, train

# Workflow variables the nodes read (declared in workflow.knime). train_limit / eval_limit:
# 0 means "all images".
FLOW_VARIABLES = ("latent_dim", "beta", "epochs", "batch_size", "learning_rate", "lr_schedule",
                  "seed", "data_dir", "device", "train_limit", "eval_limit")
_CONFIG_VARIABLES = tuple(v for v in FLOW_VARIABLES if v != "data_dir")
_HINT = ("Fix the workflow variable (right-click the workflow > Workflow Variables..., or "
         "-workflow.variable=NAME,VALUE,TYPE in batch mode).")


@dataclass(frozen=True)
class NodeParams:
    """Validated settings of a node: the training config and the MNIST folder (None = default)."""

    config: TrainConfig
    data_dir: str | None = None


def params_from_flow_variables(flow_variables: Mapping[str, Any]) -> NodeParams:
    """Cast and validate KNIME flow variables; other variables (``knime.*``, ...) are ignored.

    Raises :class:`ConfigError` with one clear message, e.g. for ``epochs = "abc"``.
    """
    values = {k: flow_variables[k] for k in _CONFIG_VARIABLES if k in flow_variables}
    for name in ("train_limit", "eval_limit"):
        value = values.get(name)
        if not isinstance(value, bool) and value in (0, "0", ""):
            values[name] = None
    data_dir = flow_variables.get("data_dir", "")
    if not isinstance(data_dir, str):
        raise ConfigError(f"data_dir must be a string (a folder path), got {data_dir!r}. {_HINT}")
    try:
        config = TrainConfig.from_dict(values, source="the flow variables")
    except ConfigError as exc:
        raise ConfigError(f"{exc} {_HINT}") from None
    return NodeParams(config=config, data_dir=data_dir.strip() or None)


# ----------------------------------------------------------------------------- outputs
class LoadOutput(NamedTuple):
    samples: pd.DataFrame  # 64 random training images (Fig. 1)
    evaluation: pd.DataFrame  # the whole evaluation split, input of Encode / Reconstruct
    png: bytes


class TrainOutput(NamedTuple):
    loss: pd.DataFrame
    model: TrainedVAE
    png: bytes


class TableAndImage(NamedTuple):
    table: pd.DataFrame
    png: bytes


# ----------------------------------------------------------------------------- steps
def load_mnist_step(params: NodeParams, n_samples: int = 64) -> LoadOutput:
    """Load MNIST: a sample table + PNG grid (Fig. 1) and the evaluation images as a table."""
    data = load_mnist(params.config, params.data_dir)
    samples, images = pipeline.sample_part(data.train, n_samples, params.config.seed)
    ev = data.eval
    evaluation = tables.image_table(ev.ids, ev.source, ev.labels, ev.images)
    return LoadOutput(samples, evaluation, plots.figure_png(plots.samples_figure(images)))


def train_step(params: NodeParams, log: Callable[[str], None] = print) -> TrainOutput:
    """Train a VAE: loss table (Fig. 4 data), the model object, and the loss curve as PNG."""
    config = params.config
    data = load_mnist(config, params.data_dir)
    log(f"Training on {len(data.train)} images, evaluating on {len(data.eval)} "
        f"({config.eval_set}), {config.epochs} epochs.")

    def report(row: dict) -> None:
        log(f"epoch {row['epoch']}/{config.epochs}: train loss {row['train_loss']:.2f}, "
            f"held-out loss {row['test_loss']:.2f}")

    result = train(config, data, progress=False, on_epoch=report)
    loss = tables.loss_table(result.history)
    model = TrainedVAE.from_model(result.model, config, result.history)
    return TrainOutput(loss, model, plots.figure_png(plots.loss_figure(loss)))


def encode_step(model: Any, table: pd.DataFrame, params: NodeParams) -> TableAndImage:
    """Latent means of every image: image_id, source, label, digit, z1..zk, logvar1..k (Fig. 6)."""
    vae, _ = _model(model, params)
    latent = pipeline.latent_part(vae, split_from_table(table))
    return TableAndImage(latent, plots.figure_png(plots.latent_figure(latent)))


def reconstruct_step(model: Any, table: pd.DataFrame, params: NodeParams, n: int = 10
                     ) -> TableAndImage:
    """``n`` seeded random images of the table and their reconstructions (Fig. 5)."""
    vae, seed = _model(model, params)
    recon, originals, recons = pipeline.reconstruction_part(vae, split_from_table(table), n, seed)
    return TableAndImage(recon, plots.figure_png(plots.reconstruction_figure(originals, recons)))


def generate_step(model: Any, params: NodeParams, n: int = 64) -> TableAndImage:
    """``n`` digits decoded from z ~ N(0, I) (Fig. 7)."""
    vae, seed = _model(model, params)
    generated, images = pipeline.generated_part(vae, n, seed)
    return TableAndImage(generated, plots.figure_png(plots.generated_figure(images)))


def decode_step(model: Any, table: pd.DataFrame, params: NodeParams) -> TableAndImage:
    """Decode the latent points z1..zk of a table (e.g. edited Encode output, a grid you made)."""
    vae, _ = _model(model, params)
    z = tables.latents_from_table(table, vae.latent_dim)
    with torch.no_grad():
        images = vae.decode(z.to(next(vae.parameters()).device)).cpu()
    return TableAndImage(tables.generated_table(z, images),
                         plots.figure_png(plots.generated_figure(images[:256])))


# ----------------------------------------------------------------------------- helpers
def _model(obj: Any, params: NodeParams) -> tuple[VAE, int]:
    """The torch model on the configured device, and the seed it was trained with."""
    trained = as_trained_vae(obj)
    return trained.model(resolve_device(params.config.device)), trained.config.seed


def split_from_table(df: pd.DataFrame, what: str = "input table") -> Split:
    """Images of a KNIME table (pixel_0..pixel_783; image_id, label, source if present)."""
    images = tables.images_from_table(df, what=what)
    labels = torch.from_numpy(tables.labels_from_table(df))
    ids = torch.arange(len(df), dtype=torch.int64)
    if "image_id" in df.columns:
        raw = pd.to_numeric(df["image_id"], errors="coerce").to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
        if not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
            raise TableError(f"Column image_id of the {what} must hold whole numbers without "
                             "missing values.")
        ids = torch.from_numpy(raw.astype(np.int64))
    source: str | list[str] = "table"
    if "source" in df.columns:
        values = ["" if pd.isna(v) else str(v) for v in df["source"]]
        source = values[0] if len(set(values)) == 1 else values
    return Split(images=images, labels=labels, ids=ids, source=source)
