"""Every metric of ONE trained model, and the files that hold them in its run folder.

``estimators`` holds the metric functions; this module runs all of them on a model with the run's
seed streams, so a model gets the same numbers wherever it is evaluated (``vae-mnist evaluate``,
the sweep, the report). A run folder gains::

    metrics.json                          the scalars (written last: the "evaluated" mark)
    tables/latent_dims.* probe.* interpolation.*   in the run's table format (csv or parquet)
    figures/interpolation.png
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from vae_core.config import TrainConfig
from vae_core.data.splits import MNISTData, load_mnist
from vae_core.errors import RunDirError
from vae_core.evaluation import estimators
from vae_core.files import atomic_write_text
from vae_core.model.network import VAE
from vae_core.outputs import evaluation_figures, lab_figures
from vae_core.outputs.tables import TABLE_FORMATS, read_table, write_table
from vae_core.seeds import derive_seed
from vae_core.training.rundir import CHECKPOINT, finished_checkpoint, run_lock

DEFAULT_IW_K = 1000
DEFAULT_IW_IMAGES = 1000
INTERP_DIGITS = (2, 7)  # endpoints of the interpolation strips: first held-out 2 and first 7
INTERP_STEPS = 10
METRICS_FILE = "metrics.json"
EVALUATION_TABLES = ("latent_dims", "probe", "interpolation")


@dataclass
class ModelEvaluation:
    """Scalar metrics plus the per-dimension, probe and interpolation tables of one model."""

    metrics: dict
    dims: pd.DataFrame
    probe: pd.DataFrame
    interpolation: pd.DataFrame
    interpolation_images: torch.Tensor


def interpolation_endpoints(data: MNISTData) -> tuple[int, int]:
    """Positions of the first held-out images of INTERP_DIGITS (fallback: images 0 and 1), so
    every model of a sweep interpolates between the same two images."""
    labels = data.eval.labels
    found = [int(torch.nonzero(labels == d)[0]) for d in INTERP_DIGITS if bool((labels == d).any())]
    if len(found) == 2:
        return found[0], found[1]
    return 0, min(1, len(labels) - 1)


def evaluate_model(model: VAE, config: TrainConfig, data: MNISTData, *,
                   iw_k: int = DEFAULT_IW_K, iw_images: int = DEFAULT_IW_IMAGES,
                   probe_k: int = 5, pca: estimators.PCA | None = None) -> ModelEvaluation:
    """Every metric for one trained model; each random draw has its own named stream
    of ``config.seed``, so the numbers are the same for a model wherever it is evaluated.

    ``neg_elbo`` is ``estimators.heldout_loss`` at β = 1: the number in the last row of the
    model's loss table (recon + KL), whatever β it was trained with.
    """
    ev, tr = data.eval, data.train
    elbo = estimators.heldout_loss(model, ev.images, config.seed)
    recon_mean = float(estimators.recon_bce(ev.images, estimators.reconstruct(model, ev.images))
                       .double().mean())
    sub = ev.images[: min(iw_images, len(ev))]
    iw = estimators.importance_sampled_bound(model, sub, k=iw_k,
                                           seed=derive_seed(config.seed, "iw"),
                                           binarized=config.binarize)
    elbo_sub = estimators.heldout_loss(model, sub, config.seed, stream="iw_subset")["neg_elbo"]
    dims = estimators.latent_dimensions(model, ev.images)
    probe = estimators.latent_probe(model, tr.images, tr.labels, ev.images, ev.labels, k=probe_k,
                                  pca=pca)
    rough = estimators.interpolation_roughness(model, ev.images,
                                             seed=derive_seed(config.seed, "roughness"))
    gain = estimators.decoder_gain(model, ev.images, seed=derive_seed(config.seed, "decoder_gain"))
    a, b = interpolation_endpoints(data)
    z, imgs = estimators.interpolate(model, ev.images[a], ev.images[b], INTERP_STEPS)
    by = probe.set_index("features")
    metrics = {
        "latent_dim": config.latent_dim, "beta": config.beta, "epochs": config.epochs,
        "binarize": config.binarize, "train_images": len(tr), "eval_images": len(ev),
        "recon": elbo["recon"], "kl": elbo["kl"], "neg_elbo": elbo["neg_elbo"],
        "recon_mean": recon_mean, "iw_k": iw_k, "iw_images": iw["images"],
        "iw_bound": iw["value"], "iw_sem": iw["sem"], "iw_name": iw["name"],
        "neg_elbo_iw_subset": elbo_sub, "active_units": int(dims["active"].sum()),
        "knn_vae": float(by.loc["vae_mu", "knn_accuracy"]),
        "logreg_vae": float(by.loc["vae_mu", "logreg_accuracy"]),
        "knn_pca": float(by.loc["pca", "knn_accuracy"]),
        "logreg_pca": float(by.loc["pca", "logreg_accuracy"]),
        "roughness": rough["roughness"], "decoder_gain": gain,
        "interpolation_ids": [int(ev.ids[a]), int(ev.ids[b])],
    }
    return ModelEvaluation(metrics, dims, probe, estimators.interpolation_table(z, imgs), imgs)


def find_table(run_dir: Path, name: str) -> Path | None:
    """``tables/<name>.csv`` or ``.parquet``, whichever the run wrote (None if neither):
    ``vae-mnist run --format parquet`` folders must read like CSV ones."""
    for fmt in TABLE_FORMATS:
        path = run_dir / "tables" / f"{name}.{fmt}"
        if path.is_file():
            return path
    return None


def table_format_of(run_dir: Path) -> str:
    """The table format a run folder was written in (its loss table's), csv if it has none."""
    loss = find_table(run_dir, "loss")
    return loss.suffix[1:] if loss is not None else "csv"


def write_evaluation(ev: ModelEvaluation, run_dir: Path, extra: dict | None = None,
                     table_format: str = "csv") -> None:
    """Tables and the interpolation strip first, ``metrics.json`` last (the 'finished' mark).

    A table left in the other format by an earlier evaluation is removed, so a reader never
    finds two versions of one table."""
    for name, df in zip(EVALUATION_TABLES, (ev.dims, ev.probe, ev.interpolation), strict=True):
        write_table(df, run_dir / "tables" / f"{name}.{table_format}")
        for other in TABLE_FORMATS:
            if other != table_format:
                (run_dir / "tables" / f"{name}.{other}").unlink(missing_ok=True)
    m = ev.metrics
    lab_figures.save_figure(evaluation_figures.interpolation_figure(
        ev.interpolation_images, f"Latent interpolation, z = {m['latent_dim']}, "
                                 f"β = {m['beta']:g}"), run_dir / "figures" / "interpolation.png")
    atomic_write_text(run_dir / METRICS_FILE,
                      json.dumps({**m, **(extra or {})}, indent=2) + "\n")


def evaluate_run_dir(run_dir: str | Path, *, data_dir: str | Path | None = None,
                     iw_k: int = DEFAULT_IW_K, iw_images: int = DEFAULT_IW_IMAGES,
                     log: Callable[[str], None] = print) -> dict:
    """Evaluate the model of a ``vae-mnist run`` folder; writes metrics.json and its tables
    (in the format of the run's own tables)."""
    from vae_core.training.checkpoint import load_model

    run_dir = Path(run_dir)
    not_a_run = RunDirError(f"{run_dir} holds no {CHECKPOINT}: it is not a trained run folder. "
                            "Train first with `vae-mnist run --run-dir ...`.")
    if not run_dir.is_dir():
        raise not_a_run
    with run_lock(run_dir):  # checked under the lock: a finished swap may just have put it there
        checkpoint = finished_checkpoint(run_dir)
        if checkpoint is None:
            raise not_a_run
        model, config = load_model(checkpoint)
        data = load_mnist(config, data_dir, log=log)
        log(f"evaluating {run_dir} (L_{iw_k} on {min(iw_images, len(data.eval))} images) ...")
        ev = evaluate_model(model, config, data, iw_k=iw_k, iw_images=iw_images)
        write_evaluation(ev, run_dir, table_format=table_format_of(run_dir))
    return ev.metrics


def read_run_table(run_dir: Path, name: str) -> pd.DataFrame:
    """Table ``name`` of a run folder, in whichever format it was written."""
    path = find_table(run_dir, name)
    if path is None:
        raise RunDirError(f"{run_dir / 'tables'} holds no {name} table (.csv or .parquet). "
                          "Train or evaluate the run again.")
    return read_table(path)
