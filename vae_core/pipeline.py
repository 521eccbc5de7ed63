"""The lab's whole job as one call: load data, train, then every table and figure.

Used by ``vae-mnist run`` / ``train`` and by the KNIME nodes. A run folder looks like::

    config.json  checkpoint.pt  summary.json
    tables/  loss.csv latent.csv reconstructions.csv generated.csv samples.csv
    figures/ samples.png loss.png reconstructions.png latent.png generated.png manifold.png
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import evaluate, plots, tables
from .config import TrainConfig
from .data import MNISTData, Split, load_mnist
from .errors import ConfigError, RunDirError
from .files import atomic_open, atomic_write_text
from .model import VAE
from .seeds import derive_seed
from .train import TrainResult, train

TABLE_FORMATS = ("csv", "parquet")
CHECKPOINT = "checkpoint.pt"


@dataclass
class Outputs:
    """What a finished run produced; paths are relative to the run folder."""

    run_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- run folder
def prepare_run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"{run_dir} is a file, not a folder. Choose another --run-dir.")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"Run folder {run_dir} is not writable ({exc.strerror}). Choose a "
                          "folder you can write to with --run-dir.") from None
    return run_dir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(run_dir: Path):
    """Hold ``run_dir/.lock`` so a second run on the same folder refuses instead of clobbering."""
    lock = run_dir / ".lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                other = json.loads(lock.read_text())
            except (OSError, ValueError):
                other = {}
            stale = other.get("host") == me["host"] and not _pid_alive(int(other.get("pid", -1)))
            if stale:
                lock.unlink(missing_ok=True)
                continue
            raise RunDirError(
                f"Run folder {run_dir} is in use by another run (pid {other.get('pid', '?')} on "
                f"{other.get('host', '?')}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(other.get('started', 0)))})."
                f" Wait for it to finish, or use another --run-dir. If no such run exists, "
                f"delete {lock}.") from None
    else:
        raise RunDirError(f"Could not lock run folder {run_dir}.")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        yield
    finally:
        lock.unlink(missing_ok=True)


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
def run_training(config: TrainConfig, run_dir: str | Path, *, data_dir=None, resume: bool = False,
                 overwrite: bool = False, progress: bool = True, with_results: bool = True,
                 table_format: str = "csv", log: Callable[[str], None] = print) -> Outputs:
    """Train into ``run_dir`` (checkpoint each epoch), then write tables and figures.

    ``with_results=False`` stops after the loss table and loss curve (``vae-mnist train``).
    """
    run_dir = prepare_run_dir(run_dir)
    with run_lock(run_dir):
        ckpt = run_dir / CHECKPOINT
        if ckpt.exists() and not (resume or overwrite):
            raise RunDirError(f"Run folder {run_dir} already holds a trained run. Use --resume to "
                              "continue it, --overwrite to start it again, or another --run-dir.")
        if overwrite and not resume:
            ckpt.unlink(missing_ok=True)
        atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
        started = time.perf_counter()
        data = load_mnist(config, data_dir, log=log)
        train_started = time.perf_counter()
        result: TrainResult = train(config, data, checkpoint=ckpt, resume=resume,
                                    progress=progress)
        train_seconds = time.perf_counter() - train_started
        if with_results:
            res = lab_results(result.model, config, data, result.history)
            out = write_results(res, result.model, run_dir, table_format)
        else:
            out = Outputs(run_dir=run_dir)
            loss = tables.loss_table(result.history)
            out.tables["loss"] = Path("tables") / f"loss.{table_format}"
            write_table(loss, run_dir / out.tables["loss"])
            out.figures["loss"] = Path("figures") / "loss.png"
            plots.save_figure(plots.loss_figure(loss), run_dir / out.figures["loss"])
        last = result.history[-1]
        out.summary = {
            "epochs": int(last["epoch"]), "latent_dim": config.latent_dim, "beta": config.beta,
            "train_images": len(data.train), "eval_images": len(data.eval),
            "eval_set": config.eval_set,
            "final_train_loss": last["train_loss"], "final_test_loss": last["test_loss"],
            "final_test_recon": last["test_recon"], "final_test_kl": last["test_kl"],
            "train_seconds": round(train_seconds, 2),
            "total_seconds": round(time.perf_counter() - started, 2),
            "device": str(next(result.model.parameters()).device),
            "checkpoint": CHECKPOINT,
            "tables": {k: str(v) for k, v in out.tables.items()},
            "figures": {k: str(v) for k, v in out.figures.items()},
        }
        atomic_write_text(run_dir / "summary.json", json.dumps(out.summary, indent=2) + "\n")
    return out
