"""Figures of the evaluation and the sweep (matplotlib Figures; save with ``lab_figures.save_figure``).

Kept apart from ``plots`` (the lab's own figures) so each module stays about one thing.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vae_core.outputs.lab_figures import _grid, _image_figure, new_figure

KL_FLOOR = 1e-3  # nats; the log axis needs a floor for collapsed (0-KL) dimensions


def interpolation_figure(images: torch.Tensor, title: str = "Latent interpolation") -> Figure:
    """One strip: the decoded images along a straight path between two latent means."""
    return _image_figure(images, len(images), title, scale=0.8)


def interpolation_grid_figure(strips: list[tuple[str, torch.Tensor]],
                              title: str = "Interpolation between the same two images") -> Figure:
    """Strips of several models, one row each, labelled on the left (same endpoints)."""
    n = len(strips[0][1])
    grid = _grid(torch.cat([s for _, s in strips]), n)
    h, w = grid.shape
    fig = new_figure((w / 28 * 0.55 + 1.4, h / 28 * 0.55 + 0.6))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([2 + 30 * i + 14 for i in range(len(strips))], [lab for lab, _ in strips])
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _beta_colors(betas) -> dict[float, tuple]:
    cmap = matplotlib.colormaps["viridis"]
    betas = sorted(set(betas))
    return {b: cmap(i / max(len(betas) - 1, 1) * 0.9) for i, b in enumerate(betas)}


def _latent_colors(latents) -> dict[int, tuple]:
    cmap = matplotlib.colormaps["plasma"]
    latents = sorted(set(latents))
    return {z: cmap(i / max(len(latents) - 1, 1) * 0.85) for i, z in enumerate(latents)}


def tradeoff_figure(exp: pd.DataFrame) -> Figure:
    """Reconstruction (BCE) against KL, one line per latent size through its β values."""
    fig = new_figure((7, 5))
    ax = fig.add_subplot()
    colors = _latent_colors(exp["latent_dim"])
    for z, grp in exp.sort_values("beta").groupby("latent_dim"):
        ax.plot(grp["kl"], grp["recon"], marker="o", color=colors[z], label=f"z = {z}")
        for _, row in grp.iterrows():
            ax.annotate(f"β={row['beta']:g}", (row["kl"], row["recon"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("held-out KL(q(z|x) ‖ p(z)) (nats per image)")
    ax.set_ylabel("held-out reconstruction BCE (nats per image)")
    ax.set_title("Reconstruction vs KL across β (lower-left is better)")
    ax.grid(alpha=0.3)
    ax.legend(title="latent size")
    fig.tight_layout()
    return fig


def metrics_vs_latent_figure(exp: pd.DataFrame) -> Figure:
    """neg-ELBO (β = 1), reconstruction, active units and kNN accuracy against latent size."""
    fig = new_figure((10, 7.5))
    axes = fig.subplots(2, 2)
    colors = _beta_colors(exp["beta"])
    panels = [("neg_elbo", "held-out neg-ELBO at β = 1 (nats)"),
              ("recon", "held-out reconstruction BCE (nats)"),
              ("active_units", "active units (Cov_x E_q[z_u] > 0.01)"),
              ("knn_vae", "kNN (k = 5) accuracy of μ(x)")]
    for ax, (col, label) in zip(axes.flat, panels, strict=True):
        for b, grp in exp.sort_values("latent_dim").groupby("beta"):
            ax.plot(grp["latent_dim"], grp[col], marker="o", color=colors[b], label=f"β = {b:g}")
        if col == "knn_vae" and "knn_pca" in exp:
            pca = exp.groupby("latent_dim")["knn_pca"].first()
            ax.plot(pca.index, pca.values, ls="--", color="grey", marker="s", label="PCA")
        if col == "active_units":
            zs = sorted(exp["latent_dim"].unique())
            ax.plot(zs, zs, ls=":", color="grey", label="all units")
        ax.set_xscale("log", base=2)
        zs = sorted(exp["latent_dim"].unique())
        ax.set_xticks(zs, [str(z) for z in zs])
        ax.set_xlabel("latent size")
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Held-out metrics against latent size")
    fig.tight_layout()
    return fig


def kl_per_dim_figure(dims: pd.DataFrame) -> Figure:
    """KL per latent dimension (sorted, largest first), one panel per latent size, lines per β."""
    latents = sorted(dims["latent_dim"].unique())
    fig = new_figure((3.2 * len(latents) + 0.5, 3.6))
    axes = fig.subplots(1, len(latents), squeeze=False)
    colors = _beta_colors(dims["beta"])
    for ax, z in zip(axes[0], latents, strict=True):
        sub = dims[dims["latent_dim"] == z]
        for b, grp in sub.groupby("beta"):
            kl = np.sort(grp["kl"].to_numpy())[::-1]
            ax.plot(np.arange(1, len(kl) + 1), np.clip(kl, KL_FLOOR, None), marker="o", ms=3,
                    color=colors[b], label=f"β = {b:g}")
        ax.set_yscale("log")
        ax.set_ylim(bottom=KL_FLOOR / 2)
        ax.set_title(f"z = {z}")
        ax.set_xlabel("dimension (sorted by KL)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean KL per dimension (nats)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"KL per latent dimension (values below {KL_FLOOR:g} drawn at {KL_FLOOR:g}): "
                 "units with ~0 KL are unused")
    fig.tight_layout()
    return fig


def loss_curves_figure(histories: pd.DataFrame) -> Figure:
    """Held-out training loss (BCE + β·KL) per epoch, one panel per latent size, lines per β."""
    latents = sorted(histories["latent_dim"].unique())
    fig = new_figure((3.2 * len(latents) + 0.5, 3.6))
    axes = fig.subplots(1, len(latents), squeeze=False, sharey=False)
    colors = _beta_colors(histories["beta"])
    for ax, z in zip(axes[0], latents, strict=True):
        sub = histories[histories["latent_dim"] == z]
        for b, grp in sub.groupby("beta"):
            ax.plot(grp["epoch"], grp["test_loss"], color=colors[b], label=f"β = {b:g}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"z = {z}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out loss, BCE + β·KL (nats)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("Training curves (held-out loss as trained, β-weighted)")
    fig.tight_layout()
    return fig


def smoothness_figure(exp: pd.DataFrame) -> Figure:
    """The smoothness proxy (interpolation roughness) and detail (reconstruction) against β."""
    fig = new_figure((10, 4))
    axes = fig.subplots(1, 2)
    colors = _latent_colors(exp["latent_dim"])
    for z, grp in exp.sort_values("beta").groupby("latent_dim"):
        axes[0].plot(grp["beta"], grp["roughness"], marker="o", color=colors[z], label=f"z = {z}")
        axes[1].plot(grp["beta"], grp["recon_mean"], marker="o", color=colors[z],
                     label=f"z = {z}")
    axes[0].set_ylabel("interpolation roughness\n(largest step / mean step; 1 = even)")
    axes[1].set_ylabel("BCE of the reconstruction from μ (nats)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        bs = sorted(exp["beta"].unique())
        ax.set_xticks(bs, [f"{b:g}" for b in bs])
        ax.set_xlabel("β")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Higher β: smoother latent paths? less detail?")
    fig.tight_layout()
    return fig


def score_figure(neg_elbo: np.ndarray, threshold: float, quantile: float) -> Figure:
    """Histogram of the scored images' neg-ELBO, with the unusual threshold marked."""
    fig = new_figure((7, 4))
    ax = fig.add_subplot()
    ax.hist(neg_elbo, bins=60, color="#4c72b0")
    ax.axvline(threshold, color="#c44e52", linestyle="--",
               label=f"threshold {threshold:.1f} (held-out quantile {quantile:g})")
    unusual = int((np.asarray(neg_elbo) > threshold).sum())
    ax.set_title(f"Scores of {len(neg_elbo)} images: {unusual} unusual")
    ax.set_xlabel("neg-ELBO (nats per image)")
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    return fig
