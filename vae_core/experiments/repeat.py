"""The same training recipe over several seeds: how much of a held-out number is the recipe
and how much is luck.

A seed sets the 80/20 split, the initial weights, the batch order and the noise, so the spread
over seeds is what a user who reruns the recipe with another seed should expect. Each finished
(latent size, seed) row is written at once; rerunning the same command skips finished rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from vae_core.config import (
    OPTIMISATION,
    RECIPE_SETTINGS,
    REPEAT_VARIES,
    TrainConfig,
    settings,
)
from vae_core.data.splits import load_mnist
from vae_core.errors import ConfigError, RunDirError, named_by, option
from vae_core.evaluation import estimators
from vae_core.experiments.saved_settings import check_saved_settings
from vae_core.files import atomic_write_text
from vae_core.outputs.tables import read_table, write_table
from vae_core.training.loop import train
from vae_core.training.rundir import prepare_run_dir, run_lock

RUNS_FILE = "repeats.csv"
SUMMARY_FILE = "summary.csv"
SPEC_FILE = "repeat.json"
MARKDOWN_FILE = "summary.md"
# per row: what varies, the objective weight and how it was optimised (the whole recipe is in
# repeat.json); this is the column list of every repeats.csv written so far, so a setting added
# later (precision) is in the recipe only and old folders still resume
_CSV_OPTIMISATION = ("epochs", "batch_size", "learning_rate", "lr_schedule")
_CONFIG_COLUMNS = [*REPEAT_VARIES, "beta",
                   *(s for s in settings(OPTIMISATION) if s in _CSV_OPTIMISATION)]
RUN_COLUMNS = [*_CONFIG_COLUMNS, "eval_images", "neg_elbo", "recon", "kl", "final_train_loss",
               "train_seconds"]


def run_repeats(out_dir: str | Path, base: TrainConfig, latent_dims: Sequence[int],
                seeds: Sequence[int], *, data_dir: str | Path | None = None,
                log: Callable[[str], None] = print) -> pd.DataFrame:
    """Train ``base`` at every latent size × seed; write the runs and their summary; resume."""
    if not latent_dims or not seeds:
        raise ConfigError("Give at least one latent size and one seed.")
    if len(set(seeds)) != len(seeds) or len(set(latent_dims)) != len(latent_dims):
        raise ConfigError("Latent sizes and seeds must not repeat.")
    with named_by(run_dir=option("out")):
        out_dir = prepare_run_dir(out_dir)
    recipe = {k: getattr(base, k) for k in RECIPE_SETTINGS}
    with run_lock(out_dir):
        check_saved_settings(out_dir / SPEC_FILE, "recipe", recipe, RECIPE_SETTINGS,
                             "repeats of a recipe")
        atomic_write_text(out_dir / SPEC_FILE, json.dumps({"recipe": recipe}, indent=2) + "\n")
        runs = _read_runs(out_dir)
        done = set(zip(runs["latent_dim"], runs["seed"], strict=True))
        for z in latent_dims:
            for seed in seeds:
                if (z, seed) in done:
                    log(f"z={z} seed={seed}: finished earlier, kept")
                    continue
                config = base.replace(latent_dim=z, seed=seed)
                data = load_mnist(config, data_dir)  # the split depends on the seed
                started = time.perf_counter()
                result = train(config, data, progress=False)
                seconds = time.perf_counter() - started
                parts = estimators.heldout_loss(result.model, data.eval.images, seed)
                row = {**{k: getattr(config, k) for k in _CONFIG_COLUMNS},
                       "eval_images": len(data.eval), "neg_elbo": parts["neg_elbo"],
                       "recon": parts["recon"], "kl": parts["kl"],
                       "final_train_loss": result.history[-1]["train_loss"],
                       "train_seconds": seconds}
                new = pd.DataFrame([row], columns=RUN_COLUMNS)
                runs = new if runs.empty else pd.concat([runs, new], ignore_index=True)
                runs = runs.sort_values(["latent_dim", "seed"], ignore_index=True)
                write_table(runs[RUN_COLUMNS], out_dir / RUNS_FILE)
                log(f"z={z} seed={seed}: held-out neg-ELBO {parts['neg_elbo']:.2f} "
                    f"({seconds:.0f} s)")
        summary = summarize(runs)
        write_table(summary, out_dir / SUMMARY_FILE)
        atomic_write_text(out_dir / MARKDOWN_FILE, summary_markdown(runs, summary, recipe))
    return summary


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation, min and max of the held-out neg-ELBO per latent size."""
    g = runs.groupby("latent_dim")["neg_elbo"]
    out = pd.DataFrame({"runs": g.size(), "mean": g.mean(), "sd": g.std(ddof=1),
                        "min": g.min(), "max": g.max()}).reset_index()
    out["seeds"] = [" ".join(str(s) for s in sorted(runs.loc[runs["latent_dim"] == z, "seed"]))
                    for z in out["latent_dim"]]
    return out


def summary_markdown(runs: pd.DataFrame, summary: pd.DataFrame, recipe: dict) -> str:
    """The summary and every run as Markdown, with the recipe that produced them."""
    lines = ["# Held-out neg-ELBO over seeds", "",
             "Recipe: " + ", ".join(f"{k} = {recipe[k]}" for k in RECIPE_SETTINGS if k in recipe)
             + ".",
             "A seed sets the split, the initial weights, the batch order and the noise.", "",
             "| z | runs | mean | sd | min | max |", "|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        lines.append(f"| {r.latent_dim} | {r.runs} | {r.mean:.2f} | {r.sd:.2f} | {r.min:.2f} | "
                     f"{r.max:.2f} |")
    lines += ["", "| z | seed | neg-ELBO | recon | KL | last train loss | train s |",
              "|---|---|---|---|---|---|---|"]
    for r in runs.itertuples():
        lines.append(f"| {r.latent_dim} | {r.seed} | {r.neg_elbo:.2f} | {r.recon:.2f} | "
                     f"{r.kl:.2f} | {r.final_train_loss:.2f} | {r.train_seconds:.0f} |")
    return "\n".join(lines) + "\n"


def _read_runs(out_dir: Path) -> pd.DataFrame:
    path = out_dir / RUNS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=RUN_COLUMNS)
    try:
        runs = read_table(path)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} is unreadable ({exc}). Delete it to start again.") from None
    if list(runs.columns) != RUN_COLUMNS:
        raise RunDirError(f"{path} is not a table of repeated runs. Use another folder "
                          f"({option('out')}).")
    return runs


