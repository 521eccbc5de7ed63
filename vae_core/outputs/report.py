"""One self-contained HTML report of a run folder or a sweep folder.

Figures are embedded as base64 PNG and tables written as HTML, so the single file can be mailed
or opened offline. Each table carries ``data-source`` (the CSV it shows) and each figure
``data-source`` (its PNG), which is how the tests check the report against the folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from vae_core.config import OPTIMISATION, settings
from vae_core.errors import RunDirError
from vae_core.evaluation.run_metrics import (
    DEFAULT_IW_IMAGES,
    DEFAULT_IW_K,
    METRICS_FILE,
    evaluate_run_dir,
    find_table,
)
from vae_core.files import atomic_write_text
from vae_core.outputs.html_page import esc, figure_html, format_value, kv_table, page, table_html
from vae_core.outputs.tables import read_table
from vae_core.training.rundir import finished_checkpoint, run_lock

REPORT_FILE = "report.html"

# The lab's figures, in the lab's order, with its captions.
LAB_FIGURES = [
    ("samples", "Figure 1: sample images from the MNIST training split"),
    ("loss", "Figure 4: training and held-out loss over epochs (BCE + β·KL per image)"),
    ("reconstructions", "Figure 5: held-out originals (top) and reconstructions from μ (bottom)"),
    ("latent", "Figure 6: latent means of held-out images, coloured by digit"),
    ("generated", "Figure 7: digits decoded from z ~ N(0, I)"),
    ("manifold", "The decoded 2-D latent manifold (z = 2 only)"),
    ("interpolation", "Decoded straight path between the latent means of two held-out images"),
]
SWEEP_FIGURES = [
    ("tradeoff", "Reconstruction against KL: each line is one latent size, its points the β "
                 "values. Lower β moves right (more KL) and down (better reconstruction)."),
    ("metrics_vs_latent", "Held-out metrics against latent size, one line per β; the dashed "
                          "line is the PCA baseline of the same dimension."),
    ("smoothness", "The smoothness proxy (interpolation roughness, lower = smoother) and the "
                   "detail proxy (BCE of the reconstruction from μ, higher = less detail) "
                   "against β."),
    ("kl_per_dim", "KL per latent dimension, sorted; dimensions near 0 nats are unused "
                   "(inactive)."),
    ("interpolations", "The same two held-out images (the first 2 and the first 7 of the "
                       "held-out split) interpolated by every model, along the straight line "
                       "between their latent means."),
    ("loss_curves", "Held-out loss during training (β-weighted, as trained)."),
]
HEADLINE_COLUMNS = ["config", "latent_dim", "beta", "neg_elbo", "recon", "kl", "iw_bound",
                    "active_units", "knn_vae", "knn_pca", "logreg_vae", "logreg_pca",
                    "roughness", "train_seconds"]
METRIC_GLOSSARY = [
    ("recon, kl, neg_elbo", "held-out reconstruction BCE, KL and their sum (β = 1, even for "
                            "β ≠ 1 models: the β-weighted loss is not an ELBO); nats per image, "
                            "one z sample per image: the project's one held-out estimate, the "
                            "same as the last row of the model's loss table (test_recon + "
                            "test_kl)"),
    ("recon_mean", "BCE of the deterministic reconstruction decoded from μ(x)"),
    ("iw_bound", "−L_k of Burda et al. (k = iw_k importance samples) on the first iw_images "
                 "held-out images. With grey-level pixels this is an importance-sampled BCE "
                 "bound, not a negative log-likelihood; only on binarized MNIST is it an NLL "
                 "bound. neg_elbo_iw_subset is the same one-sample neg-ELBO estimate on those images "
                 "(its own noise), for the gap"),
    ("active_units", "latent units with Cov_x E_q[z_u] > 0.01 (Burda et al.)"),
    ("knn_*, logreg_*", "accuracy of a 5-nearest-neighbour vote and of a multinomial logistic "
                        "regression on μ(x) (vae) or on the PCA projection of the same "
                        "dimension (pca), fit on the training split, scored on held-out"),
    ("roughness", "smoothness proxy: largest / mean pixel-space step along straight paths "
                  "between latent means of 200 held-out pairs (1 = even morph; higher = jumps)"),
    ("decoder_gain", "finite-difference Lipschitz estimate of the decoder around μ(x) "
                     "(pixel distance per unit of latent distance)"),
    ("train_seconds", "sum of epoch wall times, including each epoch's held-out pass"),
]

def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path} is missing or damaged ({exc}).") from None


def _glossary() -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in METRIC_GLOSSARY)
    return f'<details><summary>What the columns mean</summary><dl class="glossary">{items}</dl>' \
           "</details>"


# ----------------------------------------------------------------------------- run report
def _lab_figures(run_dir: Path, prefix: str = "") -> list[str]:
    out = []
    for name, caption in LAB_FIGURES:
        path = run_dir / "figures" / f"{name}.png"
        if path.is_file():
            out.append(figure_html(path, f"{prefix}{name}", caption,
                                   str(Path(prefix.rstrip("-")) / "figures" / f"{name}.png")
                                   if prefix else f"figures/{name}.png"))
    return out


def _metrics_section(run_dir: Path) -> list[str]:
    m = _read_json(run_dir / METRICS_FILE)
    try:
        rows = _metric_rows(m)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunDirError(f"{run_dir / METRICS_FILE} is damaged or incomplete (no {exc}). Run "
                          f"`vae-mnist evaluate {run_dir}` again.") from None
    body = ["<h2>Metrics</h2>", kv_table(rows, "table-metrics", "metrics.json", key="metric")]
    for name, title in (("latent_dims", "Per latent dimension"), ("probe", "Latent probes")):
        path = find_table(run_dir, name)  # csv, or parquet for a `--format parquet` run
        if path is not None:
            body += [f"<h3>{title}</h3>",
                     table_html(read_table(path), f"table-{name}", f"tables/{path.name}")]
    body.append(_glossary())
    return body


def _metric_rows(m: dict) -> dict:
    bound_name = m.get("iw_name", "importance-sampled bound")
    return {
        "held-out neg-ELBO at β = 1 (nats/image)": m["neg_elbo"],
        "of which reconstruction BCE": m["recon"], "of which KL": m["kl"],
        "BCE of the reconstruction from μ": m["recon_mean"],
        f"{bound_name} on {m['iw_images']} held-out images": m["iw_bound"],
        "standard error of that bound (over images)": m["iw_sem"],
        "neg-ELBO on the same images": m["neg_elbo_iw_subset"],
        "active units": f"{m['active_units']} of {m['latent_dim']}",
        "kNN (k = 5) accuracy of μ(x)": m["knn_vae"],
        f"kNN accuracy of PCA ({m['latent_dim']} dims)": m["knn_pca"],
        "logistic-regression accuracy of μ(x)": m["logreg_vae"],
        "logistic-regression accuracy of PCA": m["logreg_pca"],
        "interpolation roughness (smoothness proxy)": m["roughness"],
        "decoder gain (Lipschitz estimate)": m["decoder_gain"],
    }


def run_report(run_dir: Path) -> str:
    config = _read_json(run_dir / "config.json")
    summary = _read_json(run_dir / "summary.json") if (run_dir / "summary.json").is_file() else {}
    title = (f"VAE on MNIST: z = {config.get('latent_dim')}, β = "
             f"{format_value(float(config.get('beta', 1)))}")
    body = ["<h2>Configuration</h2>", kv_table(config, "table-config", "config.json")]
    if summary:
        keep = {k: v for k, v in summary.items() if not isinstance(v, dict)}
        body += ["<h3>Run summary</h3>", kv_table(keep, "table-summary", "summary.json")]
    loss = find_table(run_dir, "loss")  # csv, or parquet for a `--format parquet` run
    if loss is not None:
        body += ["<h2>Loss curves</h2>"]
        if (run_dir / "figures" / "loss.png").is_file():
            body.append(figure_html(run_dir / "figures" / "loss.png", "loss",
                                    dict(LAB_FIGURES)["loss"], "figures/loss.png"))
        body.append("<details><summary>Loss per epoch (table)</summary>"
                    + table_html(read_table(loss), "table-loss", f"tables/{loss.name}")
                    + "</details>")
    figs = [f for f in _lab_figures(run_dir) if 'id="fig-loss"' not in f]
    if figs:
        body += ["<h2>The lab's figures</h2>", *figs]
    if (run_dir / METRICS_FILE).is_file():
        body += _metrics_section(run_dir)
    else:
        body += ["<h2>Metrics</h2><p>Not computed: run <code>vae-mnist evaluate "
                 f"{esc(run_dir)}</code> or make the report without --no-evaluate.</p>"]
    return page(title, body)


# ----------------------------------------------------------------------------- sweep report
def _verdict_class(v: str) -> str:
    return "v-not" if v.startswith("not") else "v-partly" if v.startswith("partly") \
        else "v-supported"


def _claims_section(claims: dict) -> list[str]:
    body = ["<h2>The lab's claims, tested</h2>"]
    if not claims.get("complete_grid", True):
        body.append("<p><b>The sweep is incomplete: verdicts cover the finished configurations "
                    "only.</b></p>")
    for i, c in enumerate(claims.get("claims", [])):
        nums = c["numbers"]
        if c["id"] == "latent_size":
            grids = [("reconstruction BCE (nats), rows β, columns latent size",
                      nums["recon_by_beta_then_latent"], "β")]
        elif c["id"] == "beta_reconstruction":
            grids = [("reconstruction BCE (nats), rows latent size, columns β",
                      nums["recon_by_latent_then_beta"], "z")]
        else:
            grids = [("interpolation roughness (lower = smoother), rows latent size, columns β",
                      {z: v["roughness_by_beta"] for z, v in nums.items()}, "z"),
                     ("BCE of the reconstruction from μ (higher = less detail), rows latent "
                      "size, columns β", {z: v["recon_from_mu_by_beta"] for z, v in nums.items()},
                      "z"),
                     ("decoder gain, a Lipschitz estimate (reference only, not deciding), rows "
                      "latent size, columns β",
                      {z: v["decoder_gain_by_beta"] for z, v in nums.items()}, "z")]
        tables = []
        for j, (cap, grid, corner) in enumerate(grids):
            df = pd.DataFrame(grid).T
            df.insert(0, corner, df.index.astype(str))
            df[corner] = df[corner].astype("string")
            tables.append(table_html(df.reset_index(drop=True), f"table-claim-{i}-{j}",
                                     "claims.json", cap))
        note = f"<p>{esc(c['note'])}.</p>" if c.get("note") else ""
        body.append(
            f'<div class="claim" id="claim-{esc(c["id"])}"><p><b>{esc(c["claim"])}</b></p>'
            f'<p><span class="verdict {_verdict_class(c["verdict"])}">{esc(c["verdict"])}'
            f"</span></p><p>Measured by: {esc(c['measure'])}.</p>{''.join(tables)}{note}</div>")
    rows = []
    for t in claims.get("targets", []):
        v = t["value"]
        if isinstance(v, dict):
            v = "; ".join(f"z={z}: {a:.3f} vs PCA {b:.3f}" for z, (a, b) in v.items())
        rows.append({"target": t["target"], "value": str(v), "met": "yes" if t["met"] else "no"})
    if rows:
        body += ["<h3>Targets</h3>",
                 table_html(pd.DataFrame(rows).astype("string"), "table-targets", "claims.json")]
    return body


def sweep_report(out_dir: Path) -> str:
    from vae_core.experiments.sweep import REPEATS_DIR, config_name, load_sweep

    spec, configs = load_sweep(out_dir)
    settings = {**spec["shared"], "latent sizes": spec["latent_dims"], "β values": spec["betas"],
                "importance samples k": spec["iw_k"], "images for L_k": spec["iw_images"]}
    body = ["<p>A grid of VAEs, identical except for latent size and β, trained on the same "
            "split with the same seed, then evaluated on the held-out split. It tests the "
            "claims of the lab (§1.7) with numbers.</p>",
            "<h2>Settings</h2>", kv_table(settings, "table-settings", "sweep.json")]
    if (out_dir / "claims.json").is_file():
        body += _claims_section(_read_json(out_dir / "claims.json"))
    body += _repeats_section(out_dir / REPEATS_DIR)  # the targets over seeds, by the verdicts
    if (out_dir / "experiments.csv").is_file():
        exp = read_table(out_dir / "experiments.csv")
        head = [c for c in HEADLINE_COLUMNS if c in exp.columns]
        body += ["<h2>Experiments</h2>",
                 f"<p>{len(exp)} of {len(configs)} configurations finished. Units: nats per "
                 "image; accuracies as fractions. The main columns first, every column below."
                 "</p>", table_html(exp[head], "table-headline", "experiments.csv"),
                 "<h3>All columns</h3>", table_html(exp, "table-experiments", "experiments.csv"),
                 _glossary()]
    figs = []
    for name, caption in SWEEP_FIGURES:
        path = out_dir / "figures" / f"{name}.png"
        if path.is_file():
            figs.append(figure_html(path, name, caption, f"figures/{name}.png"))
    if figs:
        body += ["<h2>Sweep figures</h2>", *figs]
    lab = next((c for c in configs if c.latent_dim == 2 and c.beta == 1.0), configs[0])
    lab_dir = out_dir / "configs" / config_name(lab)
    if (lab_dir / "figures").is_dir():
        body += [f"<h2>The lab's figures (z = {lab.latent_dim}, β = {lab.beta:g})</h2>",
                 *_lab_figures(lab_dir, prefix=f"configs/{config_name(lab)}-")]
    if (out_dir / "kl_per_dim.csv").is_file():
        body += ["<h2>KL per latent dimension</h2>",
                 "<details><summary>Table (one row per configuration and dimension)</summary>"
                 + table_html(read_table(out_dir / "kl_per_dim.csv"), "table-kl-per-dim",
                              "kl_per_dim.csv") + "</details>"]
    return page("VAE on MNIST: latent size × β sweep", body)


def _repeats_section(repeats_dir: Path) -> list[str]:
    """Folders of ``vae-mnist repeat`` in a sweep's ``repeats/`` (where ``make targets`` writes):
    the held-out spread over seeds."""
    folders = sorted(p.parent for p in repeats_dir.glob("*/summary.csv"))
    if not folders:
        return []
    body = ["<h2>Held-out neg-ELBO over seeds</h2>",
            "<p>One recipe trained with several seeds (<code>vae-mnist repeat</code>; a seed sets "
            "the split, initial weights, batch order and noise). Nats per image at β = 1.</p>"]
    for i, folder in enumerate(folders):
        recipe = _read_json(folder / "repeat.json").get("recipe", {})
        shown = {k: recipe[k] for k in ("beta", *settings(OPTIMISATION)) if k in recipe}
        text = ", ".join(f"{k} = {format_value(v)}" for k, v in shown.items())
        rel = folder.relative_to(repeats_dir.parent).as_posix()
        body += [f"<h3>{esc(folder.name)}: {esc(text)}</h3>",
                 table_html(read_table(folder / "summary.csv"), f"table-repeats-{i}",
                            f"{rel}/summary.csv")]
    return body


def novelty_report(out_dir: Path) -> str:
    """The leave-one-digit-out benchmark's page: per digit (mean and sd over seeds), the
    calibration of the unusual threshold, every run (tables written by experiments.novelty)."""
    body = ["<p>For each digit d, a VAE trained without d scores MNIST's test set; AUROC and "
            "AUPRC say how well each score tells d from the digits seen in training. The PCA "
            "baseline is the reconstruction error with as many components as the latent size, "
            "measured in the same run.</p>",
            "<h2>Per digit (mean and sd over seeds)</h2>",
            table_html(read_table(out_dir / "novelty.csv"), "novelty", "novelty.csv"),
            "<h2>Calibration</h2>",
            table_html(read_table(out_dir / "novelty_calibration.csv"), "calibration",
                       "novelty_calibration.csv"),
            "<h2>Every run</h2>",
            table_html(read_table(out_dir / "novelty_runs.csv"), "runs", "novelty_runs.csv")]
    return page("Leave-one-digit-out novelty detection", body)


# ----------------------------------------------------------------------------- entry point
def build_report(folder: str | Path) -> str:
    """The HTML of a sweep folder (has sweep.json), a novelty benchmark folder (has
    novelty_runs.csv) or a run folder (has config.json)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunDirError(f"{folder} is not a folder. Give a run folder (from `vae-mnist run`) "
                          "or a sweep folder (from `vae-mnist sweep`).")
    if (folder / "sweep.json").is_file():
        return sweep_report(folder)
    if (folder / "novelty_runs.csv").is_file():
        return novelty_report(folder)
    if (folder / "config.json").is_file():
        return run_report(folder)
    raise RunDirError(f"{folder} holds neither a run (config.json) nor a sweep (sweep.json). "
                      "Give a folder written by `vae-mnist run` or `vae-mnist sweep`.")


def write_report(folder: str | Path, output: str | Path | None = None, *, data_dir=None,
                 evaluate_missing: bool = True, iw_k: int = DEFAULT_IW_K,
                 iw_images: int = DEFAULT_IW_IMAGES,
                 log: Callable[[str], None] = print) -> Path:
    """Write the report (default FOLDER/report.html); a run folder is evaluated first if it has a
    checkpoint but no metrics yet (needs MNIST) unless ``evaluate_missing`` is False."""
    folder = Path(folder)
    is_run = (folder / "config.json").is_file() and not (folder / "sweep.json").is_file()
    if (is_run and evaluate_missing and not (folder / METRICS_FILE).is_file()
            and finished_checkpoint(folder) is not None):
        evaluate_run_dir(folder, data_dir=data_dir, iw_k=iw_k, iw_images=iw_images, log=log)
    path = Path(output) if output else folder / REPORT_FILE
    inside = folder.is_dir() and path.resolve().parent.is_relative_to(folder.resolve())
    # writing into the folder: hold its lock, so no run swaps in while the report is built
    with run_lock(folder) if inside else contextlib.nullcontext():
        atomic_write_text(path, build_report(folder))
    return path
