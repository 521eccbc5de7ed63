"""The lab's whole job as one call: load data, train, then every table and figure.

Used by ``vae-mnist run`` / ``train`` and by the KNIME nodes. A run folder looks like::

    config.json  checkpoint.pt  summary.json
    tables/  loss.csv latent.csv reconstructions.csv generated.csv samples.csv
    figures/ samples.png loss.png reconstructions.png latent.png generated.png manifold.png

The run is built in ``.incomplete/`` inside the folder and swapped in only once it has
succeeded (:mod:`vae_core.rundir`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import evaluate, plots, rundir, tables
from .checkpoint import config_of, load_checkpoint, save_checkpoint
from .config import RESUME_MAY_CHANGE, RESUME_MUST_MATCH, TrainConfig, epochs_problem
from .data import MNISTData, Split, load_mnist
from .errors import CheckpointError, ConfigError, RunDirError
from .files import atomic_open, atomic_write_text
from .model import VAE
from .rundir import CHECKPOINT
from .seeds import derive_seed
from .train import TrainResult, train

TABLE_FORMATS = ("csv", "parquet")


@dataclass
class Outputs:
    """What a finished run produced; paths are relative to the run folder."""

    run_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    # on --resume: the settings taken from the checkpoint (those the caller did not give)
    from_checkpoint: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- tables
def write_table(df: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically as CSV or Parquet (by suffix)."""
    with atomic_open(path) as fh:
        if path.suffix == ".parquet":
            df.to_parquet(fh, index=False)
        else:
            df.to_csv(fh, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table`; every float64 comes back bit for bit.

    CSV floats are parsed with ``float_precision="round_trip"``: pandas' default parser (2.0 in
    KNIME 5.5 and 2.3 alike) is off by one unit in the last place for many values.
    """
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, float_precision="round_trip")


# ----------------------------------------------------------------------------- results
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


# The parts below are shared with the KNIME node steps (vae_core.steps). Each draws its own
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
    mu, logvar = evaluate.encode(model, split.images)
    return tables.latent_table(split.ids, split.source, split.labels, mu, logvar)


def reconstruction_part(model: VAE, split: Split, n: int, seed: int
                        ) -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor]:
    """Fig. 5 data: ``n`` seeded random images of ``split`` and their reconstructions."""
    r = pick(len(split), n, derive_seed(seed, "reconstructions"))
    originals = split.images[r]
    recons = evaluate.reconstruct(model, originals)
    table = tables.reconstruction_table(split.ids[r], _sources(split.source, r),
                                        split.labels[r], originals, recons,
                                        evaluate.recon_bce(originals, recons))
    return table, originals, recons


def generated_part(model: VAE, n: int, seed: int) -> tuple[pd.DataFrame, torch.Tensor]:
    """Fig. 7 data: ``n`` digits decoded from seeded z ~ N(0, I)."""
    z, images = evaluate.generate(model, n, seed=derive_seed(seed, "generated"))
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
        "samples": plots.samples_figure(res.sample_images),
        "loss": plots.loss_figure(res.loss),
        "reconstructions": plots.reconstruction_figure(*res.recon_pair),
        "latent": plots.latent_figure(res.latent),
        "generated": plots.generated_figure(res.generated_images),
    }
    if model.latent_dim == 2:
        n = 20
        z, images = evaluate.manifold(model, n)
        figures["manifold"] = plots.manifold_figure(images, z, n)
    for name, fig in figures.items():
        path = Path("figures") / f"{name}.png"
        plots.save_figure(fig, run_dir / path)
        out.figures[name] = path
    return out


# ----------------------------------------------------------------------------- entry points
def run_training(config: TrainConfig | Mapping[str, Any], run_dir: str | Path, *,
                 sources: Mapping[str, str] | None = None, data_dir=None, resume: bool = False,
                 overwrite: bool = False, progress: bool = True, with_results: bool = True,
                 table_format: str = "csv", log: Callable[[str], None] = print) -> Outputs:
    """Train into ``run_dir`` (checkpoint each epoch), then write tables and figures.

    The run is built in ``run_dir/.incomplete`` and replaces what ``run_dir`` held (all of it)
    only once it has succeeded; a refused, failed or interrupted call leaves the finished run
    byte-identical (:func:`vae_core.rundir.staging`). ``with_results=False`` stops after the loss
    table and loss curve (``vae-mnist train``).

    ``config`` is the settings the caller gave: a mapping may leave some out (defaults, or on
    ``resume`` the checkpoint's values fill them in); a :class:`TrainConfig` gives them all.
    ``resume`` continues the interrupted training in ``.incomplete/`` if there is one, else the
    finished run; a given setting that contradicts its checkpoint is an error unless it is in
    ``RESUME_MAY_CHANGE`` (:func:`resume_config`). ``sources`` says how each given setting was
    given (``"--latent-dim 5"``), for the messages.
    """
    if table_format not in TABLE_FORMATS:
        raise ConfigError(f"Unknown table format {table_format!r}; use one of {TABLE_FORMATS}.")
    if resume and overwrite:
        raise ConfigError("--resume continues the run in the folder and --overwrite replaces it: "
                          "give one of them, not both.")
    given = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    wanted = TrainConfig.from_dict(given)  # every given value is checked before anything changes
    run_dir = rundir.prepare_run_dir(run_dir)
    with rundir.run_lock(run_dir):
        finished = rundir.finished_checkpoint(run_dir)
        unfinished = rundir.unfinished_checkpoint(run_dir)
        taken: dict[str, Any] = {}
        if resume:
            source = unfinished or finished
            if source is None:
                raise RunDirError(f"Nothing to resume: run folder {run_dir} holds no checkpoint. "
                                  "Start the run without --resume.")
            state = load_checkpoint(source)
            if "imported_from" in state:
                raise RunDirError(f"Run folder {run_dir} was made from a saved model "
                                  f"({state['imported_from']}) and holds no optimizer state, so "
                                  "it cannot be resumed. Train a new run instead.")
            saved, done = config_of(state, source), _epochs_done(state, source)
            wanted = resume_config(saved, done, given, sources or {}, source)
            taken = {k: v for k, v in wanted.to_dict().items() if k not in given}
            # the settings taken are the caller's to show (Outputs.from_checkpoint)
            log(f"Resuming {source} after epoch {done} (training to {wanted.epochs}).")
        elif unfinished is not None and not overwrite:
            raise RunDirError(
                f"Run folder {run_dir} holds an unfinished training ("
                f"{rundir.describe_checkpoint(unfinished)}, in {run_dir / rundir.STAGING}). Use "
                "--resume to continue it, --overwrite to start again, or another --run-dir.")
        elif finished is not None and not overwrite:
            raise RunDirError(f"Run folder {run_dir} already holds a trained run. Use --resume to "
                              "continue it, --overwrite to start it again, or another --run-dir.")
        continuing = resume and unfinished is not None
        seed = finished if resume and not continuing else None
        with rundir.staging(run_dir, continue_unfinished=continuing,
                            seed_checkpoint=seed) as stage:
            out = _build(wanted, stage, data_dir=data_dir, resume=resume, progress=progress,
                         with_results=with_results, table_format=table_format, log=log)
    out.run_dir = run_dir
    out.from_checkpoint = taken
    return out


def import_model(model_file: str | Path, run_dir: str | Path, *, data_dir=None,
                 overwrite: bool = False, table_format: str = "csv",
                 log: Callable[[str], None] = print) -> Outputs:
    """Make ``run_dir`` a finished run folder from a saved model (KNIME's Save Model node, or
    any model file / run checkpoint): the lab's tables and figures computed with that model on
    the MNIST split its settings name, so ``vae-mnist evaluate`` and ``report`` work on it.
    The folder holds no optimizer state, so it cannot be resumed (it says so)."""
    from .artifact import load_model_file

    if table_format not in TABLE_FORMATS:
        raise ConfigError(f"Unknown table format {table_format!r}; use one of {TABLE_FORMATS}.")
    trained = load_model_file(model_file)
    config, history = trained.config, trained.history
    if not history:
        raise CheckpointError(f"Model file {model_file} has no loss history; it was not written "
                              "by a finished training.")
    run_dir = rundir.prepare_run_dir(run_dir)
    with rundir.run_lock(run_dir):
        held = rundir.finished_checkpoint(run_dir) or rundir.unfinished_checkpoint(run_dir)
        if held and not overwrite:
            raise RunDirError(f"Run folder {run_dir} already holds a run. Use --overwrite to "
                              "replace it, or another --run-dir.")
        with rundir.staging(run_dir) as stage:
            data = load_mnist(config, data_dir, log=log)
            model = trained.model()
            out = write_results(lab_results(model, config, data, history), model, stage,
                                table_format)
            result = TrainResult(model=model, config=config, history=history)
            source = str(Path(model_file).resolve())
            out.summary = {**run_summary(config, result, data, out, 0.0), "imported_from": source}
            _write_run_files(stage, config, out.summary)
            save_checkpoint(stage / CHECKPOINT, {  # last: a failure before it keeps nothing
                "config": config.to_dict(), "epoch": len(history),
                "model": trained.record["model"], "imported_from": source,
                "history": {c: [r.get(c) for r in history] for c in tables.LOSS_COLUMNS}})
    out.run_dir = run_dir
    return out


def run_summary(config: TrainConfig, result: TrainResult, data: MNISTData, out: Outputs,
                train_seconds: float) -> dict[str, Any]:
    """What ``summary.json`` says of a trained run (a sweep configuration's too)."""
    last = result.history[-1]
    return {
        "epochs": int(last["epoch"]), "latent_dim": config.latent_dim, "beta": config.beta,
        "train_images": len(data.train), "eval_images": len(data.eval),
        "eval_set": config.eval_set,
        "final_train_loss": last["train_loss"], "final_test_loss": last["test_loss"],
        "final_test_recon": last["test_recon"], "final_test_kl": last["test_kl"],
        "train_seconds": round(train_seconds, 2),
        "device": str(next(result.model.parameters()).device),
        "checkpoint": CHECKPOINT,
        "tables": {k: str(v) for k, v in out.tables.items()},
        "figures": {k: str(v) for k, v in out.figures.items()},
    }


def resume_config(saved: TrainConfig, epochs_done: int, given: Mapping[str, Any],
                  sources: Mapping[str, str], path: Path) -> TrainConfig:
    """The settings of a resumed run: the checkpoint's, with the given ones that may change.

    One :class:`ConfigError` names every given setting that contradicts the checkpoint (with
    both values), or an epoch count that is smaller than what was trained or that a learning
    rate schedule fixes.
    """
    def label(name: str) -> str:
        return sources.get(name, f"{name}={given[name]!r}")

    wanted = TrainConfig.from_dict({**saved.to_dict(), **given})
    clashes = [f"{n}: checkpoint {getattr(saved, n)!r}, {label(n)}" for n in RESUME_MUST_MATCH
               if n in given and getattr(wanted, n) != getattr(saved, n)]
    if clashes:
        raise ConfigError(
            f"Cannot resume {path}: " + "; ".join(clashes) + ". --resume takes every setting "
            f"from the checkpoint; only {' and '.join(RESUME_MAY_CHANGE)} may change. Leave "
            f"{'this setting' if len(clashes) == 1 else 'these settings'} out, or start a new "
            "run with --overwrite or another --run-dir.")
    problem = epochs_problem(saved, wanted.epochs, epochs_done) if "epochs" in given else None
    if problem:
        raise ConfigError(f"Cannot resume {path} with {label('epochs')}: {problem}. Leave epochs "
                          f"out to keep {saved.epochs}, or start a new run with --overwrite or "
                          "another --run-dir.")
    return wanted


def _epochs_done(state: dict, path: Path) -> int:
    try:
        return int(state["epoch"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"Checkpoint {path} has no valid epoch count. Delete it and "
                              "retrain, or restore a good copy.") from None


def _build(config: TrainConfig, stage: Path, *, data_dir, resume: bool, progress: bool,
           with_results: bool, table_format: str, log: Callable[[str], None]) -> Outputs:
    """Train into ``stage`` (continuing its checkpoint on ``resume``), then write every output
    there; ``stage`` ends up holding exactly this run's files."""
    started = time.perf_counter()
    data = load_mnist(config, data_dir, log=log)
    train_started = time.perf_counter()
    result: TrainResult = train(config, data, checkpoint=stage / CHECKPOINT, resume=resume,
                                progress=progress)
    train_seconds = time.perf_counter() - train_started
    rundir.clear_outputs(stage)  # outputs of an earlier, failed attempt at this build
    if with_results:
        res = lab_results(result.model, config, data, result.history)
        out = write_results(res, result.model, stage, table_format)
    else:
        out = Outputs(run_dir=stage)
        loss = tables.loss_table(result.history)
        out.tables["loss"] = Path("tables") / f"loss.{table_format}"
        write_table(loss, stage / out.tables["loss"])
        out.figures["loss"] = Path("figures") / "loss.png"
        plots.save_figure(plots.loss_figure(loss), stage / out.figures["loss"])
    out.summary = {**run_summary(config, result, data, out, train_seconds),
                   "total_seconds": round(time.perf_counter() - started, 2)}
    _write_run_files(stage, config, out.summary)
    return out


def _write_run_files(stage: Path, config: TrainConfig, summary: dict[str, Any]) -> None:
    """config.json and summary.json of a run folder being built."""
    atomic_write_text(stage / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    atomic_write_text(stage / "summary.json", json.dumps(summary, indent=2) + "\n")
