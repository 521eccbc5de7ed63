"""The lab's tables and figures, computed from a trained model and written into a run folder.

Every part draws its random picks from its own named stream of the run's seed, so a part gives
the same result in any order and wherever it is computed (``vae-mnist run``, the sweep, the KNIME
node steps in :mod:`vae_core.nodes.steps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from vae_core.config import TrainConfig
from vae_core.data.splits import MNISTData, Split
from vae_core.errors import ConfigError
from vae_core.evaluation import estimators
from vae_core.model.network import VAE
from vae_core.outputs import lab_figures, tables
from vae_core.outputs.tables import TABLE_FORMATS, write_table
from vae_core.seeds import derive_seed

if TYPE_CHECKING:
    from vae_core.training.loop import TrainResult


@dataclass
class Outputs:
    """What a finished run produced; paths are relative to the run folder."""

    run_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    # on --resume: the settings taken from the checkpoint (those the caller did not give)
    from_checkpoint: dict[str, Any] = field(default_factory=dict)
    # the trained model and its history, as training left them (on the run's device)
    result: TrainResult | None = field(default=None, repr=False)


def pick(n_total: int, n: int, seed: int) -> torch.Tensor:
    """``n`` distinct random positions out of ``n_total`` (seeded: the same every run)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[: min(n, n_total)]


@dataclass
class LabResults:
    """Every table of the lab, in memory, plus the image tensors the figures need."""

    loss: pd.DataFrame
    samples: pd.DataFrame
    latent: pd.DataFrame
    reconstructions: pd.DataFrame
    generated: pd.DataFrame
    sample_images: torch.Tensor
    recon_pair: tuple[torch.Tensor, torch.Tensor]
    generated_images: torch.Tensor


def lab_results(model: VAE, config: TrainConfig, data: MNISTData, history: list[dict], *,
                n_samples: int = 64, n_recon: int = 10, n_generated: int = 64) -> LabResults:
    """Compute every table of the lab from a trained model (deterministic for a given seed)."""
    samples, sample_images = sample_part(data.train, n_samples, config.seed)
    recons, originals, recon_images = reconstruction_part(model, data.eval, n_recon, config.seed)
    generated, generated_images = generated_part(model, n_generated, config.seed)
    return LabResults(
        loss=tables.loss_table(history), samples=samples,
        latent=latent_part(model, data.eval), reconstructions=recons, generated=generated,
        sample_images=sample_images, recon_pair=(originals, recon_images),
        generated_images=generated_images,
    )


# The parts below are shared with the KNIME node steps (vae_core.nodes.steps). Each draws its own
# seeded generator, so they give the same result in any order. ``split.source`` may be one
# string or one string per image.
def _sources(source, idx: torch.Tensor):
    return source if isinstance(source, str) else [source[i] for i in idx.tolist()]


def sample_part(split: Split, n: int, seed: int) -> tuple[pd.DataFrame, torch.Tensor]:
    """Fig. 1 data: ``n`` seeded random images of ``split`` as a table, and their pixels."""
    s = pick(len(split), n, derive_seed(seed, "samples"))
    images = split.images[s]
    return tables.image_table(split.ids[s], _sources(split.source, s), split.labels[s],
                              images), images


def latent_part(model: VAE, split: Split) -> pd.DataFrame:
    """Fig. 6 data: latent means (and log-variances) of every image of ``split``."""
    mu, logvar = estimators.encode(model, split.images)
    return tables.latent_table(split.ids, split.source, split.labels, mu, logvar)


def reconstruction_part(model: VAE, split: Split, n: int, seed: int
                        ) -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor]:
    """Fig. 5 data: ``n`` seeded random images of ``split`` and their reconstructions."""
    r = pick(len(split), n, derive_seed(seed, "reconstructions"))
    originals = split.images[r]
    recons = estimators.reconstruct(model, originals)
    table = tables.reconstruction_table(split.ids[r], _sources(split.source, r),
                                        split.labels[r], originals, recons,
                                        estimators.recon_bce(originals, recons))
    return table, originals, recons


def generated_part(model: VAE, n: int, seed: int) -> tuple[pd.DataFrame, torch.Tensor]:
    """Fig. 7 data: ``n`` digits decoded from seeded z ~ N(0, I)."""
    z, images = estimators.generate(model, n, seed=derive_seed(seed, "generated"))
    return tables.generated_table(z, images), images


def write_results(res: LabResults, model: VAE, run_dir: Path, table_format: str = "csv"
                  ) -> Outputs:
    out = Outputs(run_dir=run_dir)
    if table_format not in TABLE_FORMATS:
        raise ConfigError(f"Unknown table format {table_format!r}; use one of {TABLE_FORMATS}.")
    for name in ("loss", "samples", "latent", "reconstructions", "generated"):
        path = Path("tables") / f"{name}.{table_format}"
        write_table(getattr(res, name), run_dir / path)
        out.tables[name] = path
    figures = {
        "samples": lab_figures.samples_figure(res.sample_images),
        "loss": lab_figures.loss_figure(res.loss),
        "reconstructions": lab_figures.reconstruction_figure(*res.recon_pair),
        "latent": lab_figures.latent_figure(res.latent),
        "generated": lab_figures.generated_figure(res.generated_images),
    }
    if model.latent_dim == 2:
        n = 20
        z, images = estimators.manifold(model, n)
        figures["manifold"] = lab_figures.manifold_figure(images, z, n)
    for name, fig in figures.items():
        path = Path("figures") / f"{name}.png"
        lab_figures.save_figure(fig, run_dir / path)
        out.figures[name] = path
    return out
