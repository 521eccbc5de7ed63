"""Experiment sweep over latent size × β: the grid, training and evaluating each configuration
(resumable), and the sweep's tables and figures. One model's metrics are in ``evaluation``; the
verdicts on the lab's claims in ``claims``.

A sweep folder looks like::

    sweep.json                      the grid and the shared settings (checked on resume)
    configs/z2_beta1/               a run folder per configuration, made by the code of
                                    `vae-mnist run` (or of `train`, with lab_outputs=False),
                                    then evaluated (metrics.json, as `vae-mnist evaluate`)
    experiments.csv                 one row per finished configuration
    kl_per_dim.csv  histories.csv   long tables behind the figures
    figures/*.png   claims.json  claims.md
    repeats/<name>/                 optional: `vae-mnist repeat` folders (`make targets`), shown
                                    by the report as the held-out neg-ELBO over seeds

A configuration is done when its folder is a finished run folder (:mod:`vae_core.training.rundir`) that
was evaluated (``metrics.json``, written last) with the configuration's settings; it is never
redone. One with a checkpoint and no metrics continues from its checkpoint, like
``vae-mnist run --resume``. Folders of earlier versions, which trained in place with
``checkpoint.pt`` at the top and no ``.incomplete/``, read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vae_core.config import RESULT_SETTINGS, SWEEP_SHARED, TrainConfig, differences
from vae_core.data.splits import MNISTData, load_mnist
from vae_core.errors import CheckpointError, ConfigError, RunDirError, named_by, option
from vae_core.evaluation import estimators
from vae_core.evaluation.run_metrics import (
    DEFAULT_IW_IMAGES,
    DEFAULT_IW_K,
    METRICS_FILE,
    evaluate_model,
    find_table,
    read_run_table,
    write_evaluation,
)
from vae_core.experiments.claims import judge_claims, write_claims
from vae_core.experiments.saved_settings import check_saved_settings
from vae_core.files import atomic_write_text
from vae_core.outputs import evaluation_figures, lab_figures, tables
from vae_core.outputs.tables import read_table, write_table
from vae_core.training.jobs import run_training
from vae_core.training.loop import TrainResult
from vae_core.training.rundir import (
    finished_checkpoint,
    prepare_run_dir,
    run_lock,
    settle,
    unfinished_checkpoint,
)

DEFAULT_LATENTS = (2, 5, 10, 20)
DEFAULT_BETAS = (0.5, 1.0, 2.0, 4.0)
SWEEP_FILE = "sweep.json"
REPEATS_DIR = "repeats"  # `vae-mnist repeat` folders inside a sweep folder (the report shows them)

EXPERIMENT_COLUMNS = [
    "config", "latent_dim", "beta", "epochs", "train_images", "eval_images",
    "recon", "kl", "neg_elbo", "recon_mean", "iw_k", "iw_images", "iw_bound", "iw_sem",
    "neg_elbo_iw_subset", "active_units", "knn_vae", "logreg_vae", "knn_pca", "logreg_pca",
    "roughness", "decoder_gain", "final_train_loss", "train_seconds",
]


def config_name(config: TrainConfig) -> str:
    return f"z{config.latent_dim}_beta{config.beta:g}"


@dataclass
class SweepResult:
    out_dir: Path
    experiments: pd.DataFrame
    claims: dict
    trained: list[str] = field(default_factory=list)  # configs trained (or continued) this call
    reused: list[str] = field(default_factory=list)  # configs already finished before


def grid(base: TrainConfig, latent_dims: Sequence[int], betas: Sequence[float]
         ) -> list[TrainConfig]:
    """The configurations of a sweep, in run order (latent size outer, β inner)."""
    if not latent_dims or not betas:
        raise ConfigError("A sweep needs at least one latent size and one β.")
    configs = [base.replace(latent_dim=z, beta=b) for z in latent_dims for b in betas]
    names = [config_name(c) for c in configs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"The sweep grid repeats {', '.join(dupes)}. List each latent size and "
                          "β once.")
    return configs


def _finished(cfg_dir: Path, config: TrainConfig) -> dict | None:
    """The metrics of a done configuration: a finished run folder evaluated with ``config``'s
    result settings."""
    path = cfg_dir / METRICS_FILE
    if finished_checkpoint(cfg_dir) is None or not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
        same = not differences(dict(metrics.get("config", {})), config, RESULT_SETTINGS)
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # a damaged mark: redo the evaluation (the checkpoint is kept)
    return metrics if same else None


def run_sweep(out_dir: str | Path, base: TrainConfig | None = None, *,
              latent_dims: Sequence[int] = DEFAULT_LATENTS,
              betas: Sequence[float] = DEFAULT_BETAS, data_dir: str | Path | None = None,
              iw_k: int = DEFAULT_IW_K, iw_images: int = DEFAULT_IW_IMAGES,
              progress: bool = False, log: Callable[[str], None] = print,
              lab_outputs: bool = True, figures: bool = True,
              on_config_done: Callable[[str], None] | None = None) -> SweepResult:
    """Train and evaluate every configuration of the grid; finished ones are kept and skipped.

    ``base`` holds the shared settings (epochs, seed, split, limits); the grid sets latent_dim
    and beta. Interrupting is safe: rerun the same call to continue. ``lab_outputs=False``
    skips the lab's tables and figures in each configuration folder (only the loss table is
    kept); ``figures=False`` skips the sweep figures (both for quick runs).
    """
    base = base or TrainConfig()
    if iw_k < 1 or iw_images < 1:
        raise ConfigError("iw_k and iw_images must be integers >= 1.")
    configs = grid(base, latent_dims, betas)
    with named_by(run_dir=option("out")):  # the sweep's folders are the user's --out
        return _run_sweep(Path(out_dir), base, configs, latent_dims, betas, data_dir, iw_k,
                          iw_images, progress, log, lab_outputs, figures, on_config_done)


def _run_sweep(out_dir: Path, base: TrainConfig, configs: list[TrainConfig],
               latent_dims: Sequence[int], betas: Sequence[float], data_dir, iw_k: int,
               iw_images: int, progress: bool, log: Callable[[str], None], lab_outputs: bool,
               figures: bool, on_config_done: Callable[[str], None] | None) -> SweepResult:
    out_dir = prepare_run_dir(out_dir)
    spec = {"latent_dims": list(latent_dims), "betas": [float(b) for b in betas],
            "shared": {k: getattr(base, k) for k in SWEEP_SHARED}, "iw_k": iw_k,
            "iw_images": iw_images}
    result = SweepResult(out_dir=out_dir, experiments=pd.DataFrame(), claims={})
    with run_lock(out_dir):
        check_saved_settings(out_dir / SWEEP_FILE, "shared", spec["shared"], SWEEP_SHARED,
                             "a sweep", {k: spec[k] for k in ("iw_k", "iw_images")})
        atomic_write_text(out_dir / SWEEP_FILE, json.dumps(spec, indent=2) + "\n")
        data: MNISTData | None = None
        pca: estimators.PCA | None = None
        for i, config in enumerate(configs):
            name = config_name(config)
            tag = f"[{i + 1}/{len(configs)}] {name}"
            cfg_dir = out_dir / "configs" / name
            settle(cfg_dir)  # a swap a crash interrupted is finished first
            if _finished(cfg_dir, config) is not None:
                result.reused.append(name)
                log(f"{tag}: finished earlier, kept")
                continue
            if data is None:  # the grid shares the split: load it once, only if needed
                data = load_mnist(base, data_dir, log=log)
                pca = estimators.PCA(data.train.images)  # one PCA baseline for every latent size
            res = _train_one(config, data, cfg_dir, progress, log, tag, lab_outputs)
            _evaluate_one(config, res, data, cfg_dir, iw_k, iw_images, pca, log, tag)
            result.trained.append(name)
            _write_tables(out_dir, configs)
            if on_config_done is not None:
                on_config_done(name)
        exp = _write_tables(out_dir, configs)
        result.experiments = exp
        result.claims = judge_claims(exp)
        write_claims(result.claims, out_dir)
        if figures:
            write_sweep_figures(out_dir, configs)
    return result


def _train_one(config: TrainConfig, data: MNISTData, cfg_dir: Path, progress: bool,
               log: Callable[[str], None], tag: str, lab_outputs: bool) -> TrainResult:
    """Make ``cfg_dir`` a finished run folder of ``config`` with the code of ``vae-mnist run``
    (``train`` without ``lab_outputs``); one with a checkpoint (an interrupted sweep) continues
    from it, as ``--resume`` does."""
    resume = (unfinished_checkpoint(cfg_dir) or finished_checkpoint(cfg_dir)) is not None
    how = "continuing from its checkpoint" if resume else "training"
    log(f"{tag}: {how} ({config.epochs} epochs) ...")
    try:
        out = run_training(config, cfg_dir, data=data, resume=resume, progress=progress,
                           with_results=lab_outputs, log=lambda _m: None)  # it logs its own
    except (CheckpointError, ConfigError) as exc:
        raise type(exc)(f"{exc} (sweep configuration folder {cfg_dir}: delete it to train "
                        "that configuration again)") from None
    assert out.result is not None
    return out.result


def _evaluate_one(config: TrainConfig, res: TrainResult, data: MNISTData, cfg_dir: Path,
                  iw_k: int, iw_images: int, pca: estimators.PCA | None,
                  log: Callable[[str], None], tag: str) -> None:
    """Evaluate a trained configuration into its run folder; metrics.json marks it done."""
    train_seconds = float(sum(r["seconds"] for r in res.history))
    ev = evaluate_model(res.model, config, data, iw_k=iw_k, iw_images=iw_images, pca=pca)
    last = res.history[-1]
    write_evaluation(ev, cfg_dir, extra={
        "config": config.to_dict(), "final_train_loss": last["train_loss"],
        "train_seconds": train_seconds})
    m = ev.metrics
    log(f"{tag}: done in {train_seconds:.0f} s: neg-ELBO {m['neg_elbo']:.2f} = recon "
        f"{m['recon']:.2f} + KL {m['kl']:.2f}; -L_{iw_k} {m['iw_bound']:.2f}; active "
        f"{m['active_units']}/{config.latent_dim}; kNN {m['knn_vae']:.3f} (PCA {m['knn_pca']:.3f})")


def _load_finished(out_dir: Path, configs: Sequence[TrainConfig]
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Experiments, KL-per-dimension and loss-history tables of the finished configurations."""
    rows, dims, hists = [], [], []
    for config in configs:
        name = config_name(config)
        cfg_dir = out_dir / "configs" / name
        metrics = _finished(cfg_dir, config)
        if metrics is None:
            continue
        rows.append({"config": name, **{k: metrics.get(k) for k in EXPERIMENT_COLUMNS[1:]}})
        d = read_run_table(cfg_dir, "latent_dims")
        d.insert(0, "config", name)
        d.insert(1, "latent_dim", config.latent_dim)
        d.insert(2, "beta", config.beta)
        dims.append(d)
        h = read_run_table(cfg_dir, "loss")
        h.insert(0, "config", name)
        h.insert(1, "latent_dim", config.latent_dim)
        h.insert(2, "beta", config.beta)
        hists.append(h)
    exp = pd.DataFrame(rows, columns=EXPERIMENT_COLUMNS)
    return exp, (pd.concat(dims, ignore_index=True) if dims else pd.DataFrame()), \
        (pd.concat(hists, ignore_index=True) if hists else pd.DataFrame())


def _write_tables(out_dir: Path, configs: Sequence[TrainConfig]) -> pd.DataFrame:
    """Rebuild the sweep tables from every finished configuration (atomically)."""
    exp, dims, hists = _load_finished(out_dir, configs)
    write_table(exp, out_dir / "experiments.csv")
    if len(dims):
        write_table(dims, out_dir / "kl_per_dim.csv")
        write_table(hists, out_dir / "histories.csv")
    return exp


def write_sweep_figures(out_dir: Path, configs: Sequence[TrainConfig]) -> dict[str, Path]:
    """The sweep's figures from its finished configurations (the report embeds them)."""
    exp, dims, hists = _load_finished(out_dir, configs)
    if exp.empty:
        return {}
    figs = {"tradeoff": evaluation_figures.tradeoff_figure(exp),
            "metrics_vs_latent": evaluation_figures.metrics_vs_latent_figure(exp),
            "kl_per_dim": evaluation_figures.kl_per_dim_figure(dims),
            "loss_curves": evaluation_figures.loss_curves_figure(hists),
            "smoothness": evaluation_figures.smoothness_figure(exp)}
    strips = []
    for config in configs:
        path = find_table(out_dir / "configs" / config_name(config), "interpolation")
        if path is not None:
            strips.append((f"z={config.latent_dim}, β={config.beta:g}",
                           tables.images_from_table(read_table(path))))
    if strips:
        figs["interpolations"] = evaluation_figures.interpolation_grid_figure(
            strips, "Interpolation between the same two held-out images, every configuration")
    out = {}
    for name, fig in figs.items():
        out[name] = lab_figures.save_figure(fig, out_dir / "figures" / f"{name}.png")
    return out


def load_sweep(out_dir: str | Path) -> tuple[dict, list[TrainConfig]]:
    """The spec of a sweep folder and its configurations (for the report)."""
    out_dir = Path(out_dir)
    try:
        spec = json.loads((out_dir / SWEEP_FILE).read_text())
        base = TrainConfig(**spec["shared"])
        configs = grid(base, spec["latent_dims"], spec["betas"])
        # settings added after the folder was written read as their defaults (what was run)
        spec["shared"] = {k: getattr(base, k) for k in SWEEP_SHARED}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{out_dir / SWEEP_FILE} is missing or damaged ({exc}).") from None
    return spec, configs
