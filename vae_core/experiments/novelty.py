"""Leave-one-digit-out: how well the Score node's scores find a digit the model never saw, and
whether its threshold is calibrated on the digits it did see.

For every seed and digit d: train the recipe (``base``: by default the lab's, 30 epochs) on
the training images without d, exactly as ``vae-mnist train`` would (a run folder each, so an
interrupted benchmark continues like the sweep), score MNIST's 10,000 test images, and judge
"is digit d" by AUROC and AUPRC for the neg-ELBO, the L_k bound and a PCA baseline measured in
the same run (reconstruction error with as many components as the latent size, fit on the same
training images). Calibration: the share of the test images of the other digits flagged at
quantile q of the model's held-out reference scores, against 1 - q. Nothing is tuned on the
test set: the recipe is fixed before, the threshold comes from the held-out split.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vae_core.config import RESULT_SETTINGS, TrainConfig
from vae_core.data.splits import MNISTData, Split, load_mnist
from vae_core.evaluation.estimators import PCA
from vae_core.evaluation.scores import (
    Reference,
    auroc,
    average_precision,
    flagged_share,
    score_images,
)
from vae_core.experiments.saved_settings import check_saved_settings
from vae_core.files import atomic_write_text
from vae_core.outputs.report import novelty_report
from vae_core.training.jobs import run_training
from vae_core.training.rundir import (
    finished_checkpoint,
    prepare_run_dir,
    run_lock,
    settle,
    unfinished_checkpoint,
)

DEFAULT_EPOCHS = TrainConfig().epochs  # the lab's 30: 10 digits x 2 seeds fit the budget
DEFAULT_SEEDS = (0, 1)
DEFAULT_IW_K = 100
QUANTILES = (0.95, 0.99)
SCORES = ("neg_elbo", "neg_log_lik_k", "pca_error")
SPEC_FILE = "novelty.json"


def _without(split: Split, digit: int) -> Split:
    keep = split.labels != digit
    return Split(split.images[keep], split.labels[keep], split.ids[keep], split.source)


def pca_error(pca: PCA, x: torch.Tensor, dim: int) -> np.ndarray:
    """Squared reconstruction error per image from the first ``dim`` principal components."""
    x = x.double()
    recon = pca.transform(x, dim) @ pca.components[:dim] + pca.mean
    return (x - recon).pow(2).sum(1).numpy()


def judge(config: TrainConfig, data: MNISTData, test: Split, digit: int, model, reference,
          iw_k: int) -> dict:
    """The scores of one model trained without ``digit`` on the test images, judged."""
    parts = score_images(model, test.images, config.seed, iw_k)
    pca = PCA(data.train.images)
    scores = {"neg_elbo": parts["neg_elbo"], "neg_log_lik_k": parts["neg_log_lik_k"],
              "pca_error": pca_error(pca, test.images, config.latent_dim)}
    novel = (test.labels == digit).numpy()
    ref = Reference.from_data(reference)
    row = {"seed": config.seed, "digit": digit, "novel_images": int(novel.sum()),
           "normal_images": int((~novel).sum()), "train_images": len(data.train)}
    for name, s in scores.items():
        row[f"auroc_{name}"] = auroc(s, novel)
        row[f"auprc_{name}"] = average_precision(s, novel)
    for q in QUANTILES:
        row[f"flagged_{q:g}"] = flagged_share(parts["neg_elbo"][~novel], ref, q)
    return row


def run_novelty(out_dir: str | Path, base: TrainConfig, *, digits: Sequence[int] = range(10),
                seeds: Sequence[int] = DEFAULT_SEEDS, iw_k: int = DEFAULT_IW_K,
                data_dir: str | Path | None = None, log: Callable[[str], None] = print
                ) -> pd.DataFrame:
    """Every seed x digit, kept as it finishes (rerun to continue); returns the runs' table and
    writes novelty_runs.csv, novelty.csv, novelty.md and novelty.html into ``out_dir``."""
    out_dir = prepare_run_dir(out_dir)
    spec = {"config": base.to_dict(), "iw_k": iw_k}
    with run_lock(out_dir):
        check_saved_settings(out_dir / SPEC_FILE, "config", spec["config"],
                             [s for s in RESULT_SETTINGS if s != "seed"],
                             "a novelty benchmark", {"iw_k": iw_k})
        atomic_write_text(out_dir / SPEC_FILE, json.dumps(spec, indent=2) + "\n")
        test = None
        rows = []
        for seed in seeds:
            config = base.replace(seed=seed)
            data = None
            for digit in digits:
                name = f"seed{seed}_digit{digit}"
                mark = out_dir / "results" / f"{name}.json"
                if mark.is_file():
                    rows.append(json.loads(mark.read_text()))
                    log(f"{name}: finished earlier, kept")
                    continue
                if data is None:
                    data = load_mnist(config, data_dir)
                if test is None:
                    test = load_mnist(config.replace(eval_set="test", train_limit=None,
                                                     eval_limit=None), data_dir).eval
                held = MNISTData(_without(data.train, digit), _without(data.eval, digit))
                folder = out_dir / "runs" / name
                settle(folder)
                resume = (unfinished_checkpoint(folder) or finished_checkpoint(folder)) is not None
                log(f"{name}: training on {len(held.train)} images ({config.epochs} epochs) ...")
                out = run_training(config, folder, data=held, resume=resume, progress=False,
                                   with_results=False, log=lambda _m: None)
                res = out.result
                row = judge(config, held, test, digit, res.model, res.reference, iw_k)
                row["train_seconds"] = float(sum(r["seconds"] for r in res.history))
                atomic_write_text(mark, json.dumps(row, indent=2) + "\n")
                rows.append(row)
                log(f"{name}: AUROC neg-ELBO {row['auroc_neg_elbo']:.3f}, L_k "
                    f"{row['auroc_neg_log_lik_k']:.3f}, PCA {row['auroc_pca_error']:.3f}")
        runs = pd.DataFrame(rows)
        write_results(out_dir, runs, spec)
    return runs


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per digit: mean and sd over seeds of each AUROC / AUPRC, and whether PCA beats the VAE."""
    cols = [f"{m}_{s}" for m in ("auroc", "auprc") for s in SCORES]
    g = runs.groupby("digit")[cols]
    out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_sd")).reset_index()
    out.insert(1, "seeds", runs.groupby("digit").size().to_numpy())
    out["pca_beats_neg_elbo"] = out["auroc_pca_error_mean"] > out["auroc_neg_elbo_mean"]
    return out


def calibration(runs: pd.DataFrame) -> pd.DataFrame:
    """Per quantile q: the share of normal test images flagged (mean, min, max over runs, in
    points) against the target 1 - q, and how many runs fall within ±0.5 points of it."""
    rows = []
    for q in QUANTILES:
        pts = 100 * runs[f"flagged_{q:g}"]
        target = 100 * (1 - q)
        rows.append({"quantile": q, "target_pts": target, "mean_pts": pts.mean(),
                     "min_pts": pts.min(), "max_pts": pts.max(),
                     "runs_within_half_point": int(((pts - target).abs() <= 0.5).sum()),
                     "runs": len(pts)})
    return pd.DataFrame(rows)


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.3f} ± {sd:.3f}" if sd == sd else f"{mean:.3f}"


def markdown(runs: pd.DataFrame, spec: dict) -> str:
    s, c = summary(runs), calibration(runs)
    cfg = spec["config"]
    lines = [
        "# Leave-one-digit-out: finding a digit the model never saw",
        "",
        f"Recipe: the lab's (z = {cfg['latent_dim']}, hidden {cfg['hidden_dim']}, β = "
        f"{cfg['beta']:g}, batch {cfg['batch_size']}, Adam {cfg['learning_rate']:g}, "
        f"{cfg['lr_schedule']}) for {cfg['epochs']} epochs, trained on the training split "
        f"without digit d; seeds {sorted(set(runs['seed']))}; L_k with k = {spec['iw_k']}; PCA "
        f"with {cfg['latent_dim']} components. Scored: MNIST's 10,000 test images; positive = "
        "digit d. Mean ± sd over seeds.",
        "",
        "| d | AUROC neg-ELBO | AUROC L_k | AUROC PCA | AUPRC neg-ELBO | AUPRC L_k | AUPRC PCA |",
        "|---|---|---|---|---|---|---|"]
    for r in s.itertuples():
        cells = [_pm(getattr(r, f"{m}_{k}_mean"), getattr(r, f"{m}_{k}_sd"))
                 for m in ("auroc", "auprc") for k in SCORES]
        lines.append(f"| {r.digit} | " + " | ".join(cells) + " |")
    mean = runs[[f"{m}_{k}" for m in ("auroc", "auprc") for k in SCORES]].mean()
    lines.append("| all | " + " | ".join(f"{mean[f'{m}_{k}']:.3f}" for m in ("auroc", "auprc")
                                           for k in SCORES) + " |")
    losses = s.loc[s["pca_beats_neg_elbo"], "digit"].tolist()
    lines += ["", "The VAE's neg-ELBO loses to PCA (AUROC) on digit(s) "
              + ", ".join(map(str, losses)) + "." if losses else
              "The VAE's neg-ELBO beats PCA (AUROC) on every digit.", "",
              "Calibration on the normal test images (digits seen in training), flagged at the "
              "model's held-out quantile q:", "",
              "| q | target 1 - q | flagged, mean | min | max | runs within ±0.5 points |",
              "|---|---|---|---|---|---|"]
    for r in c.itertuples():
        lines.append(f"| {r.quantile:g} | {r.target_pts:.1f} % | {r.mean_pts:.2f} % | "
                     f"{r.min_pts:.2f} % | {r.max_pts:.2f} % | {r.runs_within_half_point} of {r.runs} |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, runs: pd.DataFrame, spec: dict) -> None:
    from vae_core.outputs.tables import write_table

    write_table(runs, out_dir / "novelty_runs.csv")
    write_table(summary(runs), out_dir / "novelty.csv")
    write_table(calibration(runs), out_dir / "novelty_calibration.csv")
    atomic_write_text(out_dir / "novelty.md", markdown(runs, spec))
    atomic_write_text(out_dir / "novelty.html", novelty_report(out_dir))


def publish(out_dir: str | Path, results_dir: str | Path) -> list[Path]:
    """Copy the benchmark's tables and pages into ``results_dir`` (docs/results)."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    names = ("novelty.md", "novelty.csv", "novelty_calibration.csv", "novelty_runs.csv",
             "novelty.html")
    return [Path(shutil.copy2(Path(out_dir) / n, results_dir / n)) for n in names]
