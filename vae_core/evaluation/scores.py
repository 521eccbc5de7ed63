"""How unusual an image is to a trained model: per-image neg-ELBO (and L_k), calibrated against
the model's own held-out scores, and the measures that judge such a score (AUROC, AUPRC).

A trained model carries its *reference scores*: the quantiles, at levels 0.001 ... 0.999, of the
per-image neg-ELBO of its held-out images, computed once when training ends with its own noise
stream ("reference"), so training itself is untouched. A new image's percentile is where its
neg-ELBO falls among them; it is unusual above the ``unusual_quantile`` of them. Scoring uses the
same one-sample estimator with its own stream ("score"), so on images like the held-out ones the
share flagged at quantile q is 1 - q up to sampling noise. 999 levels (8 KB, whatever the size of
the held-out set) resolve percentiles to 0.1 points, finer than the ±0.5 points calibration is
judged on, and cover the whole range a histogram shows, not only the upper tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vae_core import seeds
from vae_core.config import ScoreConfig
from vae_core.errors import CheckpointError, ConfigError, VAEError
from vae_core.evaluation.estimators import EVAL_BATCH, _device_of, _flat, importance_bound_per_image
from vae_core.model.loss import kl_divergence
from vae_core.model.network import VAE

REFERENCE_KEY = "reference_scores"  # where a checkpoint and a model record keep them
REFERENCE_LEVELS = tuple(i / 1000 for i in range(1, 1000))
SCORE_COLUMNS = ("neg_elbo", "recon", "kl", "neg_log_lik_k", "percentile", "is_unusual")
NO_REFERENCE = ("{what} has no reference scores (it was trained before vae-mnist stored them), so "
                "its scores cannot be calibrated into percentiles. Train it again (the Train VAE "
                "node, or `vae-mnist run`); a `vae-mnist run` folder gets them without retraining "
                "from `vae-mnist run --run-dir DIR --resume`.")


@torch.no_grad()
def elbo_per_image(model: VAE, x: torch.Tensor, generator: torch.Generator | None,
                   batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Per image: reconstruction BCE with one z ~ q(z|x), and the closed-form KL (nats, float64).

    The same estimator as the held-out loss, image by image. Chunks of a fixed size draw the
    noise, so an image's score depends on the model, the seed and its position in the table."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    recon, kl = [], []
    for chunk in _flat(x).split(batch_size):
        chunk = chunk.to(device)
        logits, mu, logvar = model(chunk, generator=generator)
        recon.append(F.binary_cross_entropy_with_logits(logits, chunk, reduction="none")
                     .sum(1).double().cpu())
        kl.append(kl_divergence(mu, logvar).sum(1).double().cpu())
    model.train(was_training)
    return torch.cat(recon).numpy(), torch.cat(kl).numpy()


def reference_scores(model: VAE, x: torch.Tensor, seed: int) -> dict[str, Any]:
    """The quantiles of the held-out per-image neg-ELBO, as plain data (model files, ports)."""
    recon, kl = elbo_per_image(model, x, seeds.generator(seed, "reference",
                                                         device=_device_of(model)))
    scores = recon + kl
    return {"score": "neg_elbo", "levels": list(REFERENCE_LEVELS),
            "quantiles": [float(v) for v in np.quantile(scores, REFERENCE_LEVELS)],
            "images": len(scores), "mean": float(scores.mean())}


@dataclass(frozen=True)
class Reference:
    """Validated reference scores: quantile ``levels`` (increasing) and their ``quantiles``."""

    levels: np.ndarray
    quantiles: np.ndarray
    images: int

    @classmethod
    def from_data(cls, data: Any, what: str = "the model") -> Reference | None:
        """None when there are none (an older model); damaged ones are a CheckpointError."""
        if data is None:
            return None
        try:
            levels = np.asarray(data["levels"], dtype=np.float64)
            quantiles = np.asarray(data["quantiles"], dtype=np.float64)
            images = int(data["images"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"The reference scores of {what} are damaged ({exc}). "
                                  "Train the model again.") from None
        if (levels.ndim != 1 or levels.shape != quantiles.shape or len(levels) < 2
                or not np.isfinite(quantiles).all() or np.any(np.diff(levels) <= 0)
                or np.any(np.diff(quantiles) < 0) or images < 1):
            raise CheckpointError(f"The reference scores of {what} are damaged. Train the "
                                  "model again.")
        return cls(levels, quantiles, images)

    def threshold(self, q: float) -> float:
        """The neg-ELBO above which an image is unusual at quantile ``q``."""
        if not 0 < q < 1:
            raise ConfigError(f"Invalid unusual_quantile={q!r}: it must be a number strictly "
                              "between 0 and 1 (0.99 flags the top 1 % of normal images).")
        lo, hi = float(self.levels[0]), float(self.levels[-1])
        if not lo <= q <= hi:
            raise ConfigError(f"unusual_quantile={q!r} is beyond the model's reference scores, "
                              f"which resolve quantiles {lo:g} to {hi:g}. Use a value in that "
                              "range.")
        return float(np.interp(q, self.levels, self.quantiles))

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Share (in %) of the held-out images scoring lower; clipped to the stored levels."""
        return 100.0 * np.interp(scores, self.quantiles, self.levels)


def require_reference(data: Any, what: str = "The model") -> Reference:
    ref = Reference.from_data(data, what.lower() if what.startswith("The ") else what)
    if ref is None:
        raise VAEError(NO_REFERENCE.format(what=what))
    return ref


def score_images(model: VAE, x: torch.Tensor, seed: int, iw_k: int = 0) -> dict[str, np.ndarray]:
    """neg_elbo, recon, kl (and neg_log_lik_k = -L_k when ``iw_k`` > 0) per image, nats."""
    device = _device_of(model)
    recon, kl = elbo_per_image(model, x, seeds.generator(seed, "score", device=device))
    out = {"neg_elbo": recon + kl, "recon": recon, "kl": kl}
    if iw_k > 0:
        bound = importance_bound_per_image(model, x, iw_k,
                                           seeds.generator(seed, "score_iw", device=device))
        out["neg_log_lik_k"] = bound.double().numpy()
    return out


def score_frame(parts: dict[str, np.ndarray], reference: Reference, quantile: float
                ) -> pd.DataFrame:
    """The score columns of a table, in the order of :data:`SCORE_COLUMNS`."""
    threshold = reference.threshold(quantile)
    frame = pd.DataFrame({c: parts[c] for c in SCORE_COLUMNS if c in parts})
    frame["percentile"] = reference.percentile(parts["neg_elbo"])
    frame["is_unusual"] = parts["neg_elbo"] > threshold
    return frame


def most_unusual(neg_elbo: np.ndarray, n: int) -> np.ndarray:
    """Row positions of the ``n`` highest scores, highest first (ties: earlier row first)."""
    return np.argsort(-np.asarray(neg_elbo), kind="stable")[:max(n, 0)]


@dataclass
class Scored:
    """A scored table: the input's columns, then the score columns; its images; the threshold."""

    table: pd.DataFrame
    images: torch.Tensor
    threshold: float
    quantile: float

    def flow_variables(self) -> dict[str, int | float]:
        """The count and share of unusual rows and the threshold used (plain Python numbers)."""
        count = int(self.table["is_unusual"].sum())
        return {"unusual_count": count, "unusual_share": count / len(self.table),
                "unusual_threshold": self.threshold}


def score_table(model: VAE, seed: int, reference: Any, df: pd.DataFrame, settings: ScoreConfig,
                what: str = "input table") -> Scored:
    """Score every image of a table (pixel_0 ... pixel_783) against the model's reference
    scores: the one path of the Score node and ``vae-mnist score``. Score columns already in
    the table (a table scored before) are replaced."""
    from vae_core.outputs.tables import images_from_table

    ref = require_reference(reference)
    threshold = ref.threshold(settings.unusual_quantile)  # refused before any work
    images = images_from_table(df, what=what)
    parts = score_images(model, images, seed, settings.score_iw_k)
    base = df.reset_index(drop=True).drop(columns=[c for c in SCORE_COLUMNS if c in df.columns])
    table = pd.concat([base, score_frame(parts, ref, settings.unusual_quantile)], axis=1)
    return Scored(table, images, threshold, settings.unusual_quantile)


def score_command(model_path: str, out: str, settings: ScoreConfig, *, table: str | None = None,
                  data_dir: str | None = None, device: str = "auto", log=print) -> str:
    """``vae-mnist score``: the Score node's scored table for a model file or run folder and a
    table file (default: MNIST's test images), written atomically to ``out``; returns the
    summary line."""
    from pathlib import Path

    from vae_core.data.splits import load_mnist
    from vae_core.outputs.tables import TABLE_FORMATS, image_table, read_table, write_table
    from vae_core.training.loop import resolve_device
    from vae_core.training.model_file import load_model_file

    out_path = Path(out)
    if out_path.suffix[1:] not in TABLE_FORMATS:
        raise ConfigError(f"--out {out} must end in .csv or .parquet.")
    trained = load_model_file(model_path)
    require_reference(trained.reference, f"The model {model_path}")
    if table is not None:
        if not Path(table).is_file():
            raise ConfigError(f"--table {table} does not exist. Give a CSV or Parquet file.")
        df, what = read_table(table), f"table {table}"
    else:
        test = trained.config.replace(eval_set="test", train_limit=None, eval_limit=None,
                                      batch_size=1)
        split = load_mnist(test, data_dir, log=log).eval
        df = image_table(split.ids, split.source, split.labels, split.images)
        what = "MNIST test set"
    scored = score_table(trained.model(resolve_device(device)), trained.config.seed,
                         trained.reference, df, settings, what=what)
    write_table(scored.table, out_path)
    fv = scored.flow_variables()
    return (f"Scored {len(scored.table)} images of the {what}: {fv['unusual_count']} unusual "
            f"({100 * fv['unusual_share']:.2f} %), neg-ELBO above {fv['unusual_threshold']:.2f} "
            f"nats (the model's held-out {settings.unusual_quantile:g} quantile). Table: {out}")


# ----------------------------------------------------------------------------- judging a score
def _checked(scores, positive) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    if s.shape != y.shape or s.ndim != 1 or not np.isfinite(s).all():
        raise ValueError("scores and labels must be finite 1-D arrays of the same length")
    if y.all() or not y.any():
        raise ValueError("AUROC and AUPRC need both positive and negative examples")
    return s, y


def auroc(scores, positive) -> float:
    """Area under the ROC curve: the chance that a positive scores above a negative (ties
    count one half), from average ranks."""
    s, y = _checked(scores, positive)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2  # mean of the 1-based ranks a+1 .. b
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores, positive) -> float:
    """Area under the precision-recall curve as average precision: the precision at each
    distinct threshold, weighted by the recall it adds (no interpolation)."""
    s, y = _checked(scores, positive)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # end of each group of ties
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def flagged_share(scores, reference: Reference, q: float) -> float:
    """Share of ``scores`` above the reference threshold at quantile ``q``."""
    s = np.asarray(scores, dtype=np.float64)
    return float(np.mean(s > reference.threshold(q))) if len(s) else math.nan
