"""The lab's whole job as one call: load data, train, then every table and figure, built into a
run folder.

Used by ``vae-mnist run`` / ``train`` / ``import-model`` and by the sweep for each of its
configurations (:mod:`vae_core.experiments.sweep`), so every run folder is made by this code.
One looks like::

    config.json  checkpoint.pt  summary.json
    tables/  loss.csv latent.csv reconstructions.csv generated.csv samples.csv
    figures/ samples.png loss.png reconstructions.png latent.png generated.png manifold.png

The run is built in ``.incomplete/`` inside the folder and swapped in only once it has
succeeded (:mod:`vae_core.training.rundir`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vae_core.config import TrainConfig
from vae_core.data.splits import MNISTData, load_mnist
from vae_core.errors import CheckpointError, ConfigError, RunDirError
from vae_core.evaluation.scores import REFERENCE_KEY
from vae_core.files import atomic_write_text
from vae_core.outputs import lab_figures, tables
from vae_core.outputs.results import Outputs, lab_results, write_results
from vae_core.outputs.tables import TABLE_FORMATS, write_table
from vae_core.training import rundir
from vae_core.training.checkpoint import load_checkpoint, save_checkpoint
from vae_core.training.loop import TrainResult, train
from vae_core.training.resume import epochs_done, resume_config
from vae_core.training.rundir import CHECKPOINT


# ----------------------------------------------------------------------------- entry points
def run_training(config: TrainConfig | Mapping[str, Any], run_dir: str | Path, *,
                 sources: Mapping[str, str] | None = None, data_dir=None,
                 data: MNISTData | None = None, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, with_results: bool = True, table_format: str = "csv",
                 log: Callable[[str], None] = print) -> Outputs:
    """Train into ``run_dir`` (checkpoint each epoch), then write tables and figures.

    The run is built in ``run_dir/.incomplete`` and replaces what ``run_dir`` held (all of it)
    only once it has succeeded; a refused, failed or interrupted call leaves the finished run
    byte-identical (:func:`vae_core.training.rundir.staging`). ``with_results=False`` stops
    after the loss table and loss curve (``vae-mnist train``).

    ``config`` is the settings the caller gave: a mapping may leave some out (defaults, or on
    ``resume`` the checkpoint's values fill them in); a :class:`TrainConfig` gives them all.
    ``resume`` continues the interrupted training in ``.incomplete/`` if there is one, else the
    finished run; a given setting that contradicts its checkpoint is an error unless it is in
    ``RESUME_MAY_CHANGE`` (:func:`vae_core.training.resume.resume_config`). ``sources`` says how each
    given setting was given (``"--latent-dim 5"``), for the messages. ``data``: the splits of
    these settings, already loaded (a sweep loads them once for its grid); else read from
    ``data_dir``.
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
            wanted = resume_config(state, source, given, sources or {})
            done = epochs_done(state, source)
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
            out = _build(wanted, stage, data_dir=data_dir, data=data, resume=resume,
                         progress=progress, with_results=with_results,
                         table_format=table_format, log=log)
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
    from vae_core.training.model_file import load_model_file

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
                **({} if trained.reference is None else {REFERENCE_KEY: trained.reference}),
                "history": {c: [r.get(c) for r in history] for c in tables.LOSS_COLUMNS}})
    out.run_dir = run_dir
    return out


def run_summary(config: TrainConfig, result: TrainResult, data: MNISTData, out: Outputs,
                train_seconds: float) -> dict[str, Any]:
    """What ``summary.json`` says of a trained run."""
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


def _build(config: TrainConfig, stage: Path, *, data_dir, data: MNISTData | None, resume: bool,
           progress: bool, with_results: bool, table_format: str,
           log: Callable[[str], None]) -> Outputs:
    """Train into ``stage`` (continuing its checkpoint on ``resume``), then write every output
    there; ``stage`` ends up holding exactly this run's files."""
    started = time.perf_counter()
    if data is None:
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
        lab_figures.save_figure(lab_figures.loss_figure(loss), stage / out.figures["loss"])
    out.summary = {**run_summary(config, result, data, out, train_seconds),
                   "total_seconds": round(time.perf_counter() - started, 2)}
    _write_run_files(stage, config, out.summary)
    out.result = result
    return out


def _write_run_files(stage: Path, config: TrainConfig, summary: dict[str, Any]) -> None:
    """config.json and summary.json of a run folder being built."""
    atomic_write_text(stage / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    atomic_write_text(stage / "summary.json", json.dumps(summary, indent=2) + "\n")
