"""The Score node: how unusual each image of a table is to a trained model, calibrated against
the model's held-out scores (:mod:`vae_core.evaluation.scores`), with the most unusual images
shown as input, reconstruction and error map."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from vae_core.config import SCORE_SETTINGS, ScoreConfig
from vae_core.errors import ConfigError
from vae_core.evaluation.estimators import reconstruct
from vae_core.evaluation.scores import Scored, most_unusual, score_table
from vae_core.model.network import VAE
from vae_core.nodes.steps import HINT, NodeParams
from vae_core.outputs import lab_figures, tables
from vae_core.outputs.evaluation_figures import score_figure
from vae_core.training.loop import resolve_device
from vae_core.training.model_file import TrainedVAE

# Columns of the most-unusual table besides the scores: those of the input that say which image.
_ID_COLUMNS = ("image_id", "source", "label", "digit")
IMAGE_COLUMNS = ("input", "reconstruction", "error")


class ScoreOutput(NamedTuple):
    scores: pd.DataFrame  # the input table plus neg_elbo, recon, kl, [neg_log_lik_k], ...
    unusual: pd.DataFrame  # the unusual_rows highest scores, with image cells
    png: bytes  # histogram of the scores and the threshold
    flow_variables: dict[str, int | float]  # unusual_count, unusual_share, unusual_threshold


def score_settings(flow_variables: Mapping[str, Any]) -> ScoreConfig:
    """The Score node's settings from its flow variables (missing ones: the table's defaults)."""
    values = {s.name: flow_variables[s.name] for s in SCORE_SETTINGS if s.name in flow_variables}
    try:
        return ScoreConfig.from_dict(values, source="the flow variables")
    except ConfigError as exc:
        raise ConfigError(f"{exc} {HINT}") from None


def score_step(model: Any, table: pd.DataFrame, params: NodeParams, settings: ScoreConfig
               ) -> ScoreOutput:
    """Score every image of ``table`` with the model (Predictor: the model's seed fixes the
    noise, so the same model and table give the same numbers, also from ``vae-mnist score``)."""
    trained = TrainedVAE.from_record(model)
    vae = trained.model(resolve_device(params.config.device))
    scored = score_table(vae, trained.config.seed, trained.reference, table, settings)
    unusual = unusual_table(scored, vae, settings.unusual_rows)
    png = lab_figures.figure_png(score_figure(scored.table["neg_elbo"].to_numpy(),
                                              scored.threshold, scored.quantile))
    return ScoreOutput(scored.table, unusual, png, scored.flow_variables())


def unusual_table(scored: Scored, model: VAE, n: int) -> pd.DataFrame:
    """The ``n`` rows with the highest neg-ELBO, highest first: their row in the input, ids,
    scores, and image cells of the input, its reconstruction (decoded μ(x)) and the per-pixel
    error |x - reconstruction| (white = large). Image cells: small tables only."""
    rows = most_unusual(scored.table["neg_elbo"].to_numpy(), n)
    head = scored.table.iloc[rows]
    keep = [c for c in (*_ID_COLUMNS, "neg_elbo", "recon", "kl", "neg_log_lik_k", "percentile",
                        "is_unusual") if c in head.columns]
    out = head[keep].reset_index(drop=True)
    out.insert(0, "row", rows.astype(np.int64))
    x = scored.images[rows]
    recon = reconstruct(model, x)
    for name, images in zip(IMAGE_COLUMNS, (x, recon, (x - recon).abs()), strict=True):
        out[name] = pd.Series(tables.image_cells(images), index=out.index, dtype=object)
    return out
