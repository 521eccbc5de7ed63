"""The lab's figures as matplotlib Figures (PNG), digits laid out in grids.

Figures are built on their own Agg canvas, without pyplot: no display is needed (CLI, CI,
KNIME's Python process), and importing or plotting never changes the backend or pyplot state of
the program that uses the library.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_core.files import atomic_write_bytes
from vae_core.outputs.tables import latent_plane


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty figure on its own Agg canvas (not registered with pyplot)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _grid(images: torch.Tensor, nrow: int, padding: int = 2) -> np.ndarray:
    """Digits in rows of ``nrow`` on a white background, ``padding`` pixels apart and around;
    one digit alone, unpadded. (The layout of torchvision's ``make_grid``, whose import costs
    every process that plots seconds.)"""
    digits = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 28, 28).numpy()
    if len(digits) == 1:
        return digits[0].copy()
    cols = min(nrow, len(digits))
    rows = -(-len(digits) // cols)
    step = 28 + padding
    grid = np.ones((rows * step + padding, cols * step + padding), dtype=np.float32)
    for i, digit in enumerate(digits):
        top, left = (i // cols) * step + padding, (i % cols) * step + padding
        grid[top:top + 28, left:left + 28] = digit
    return grid


def _image_figure(images: torch.Tensor, nrow: int, title: str, scale: float = 0.6) -> Figure:
    grid = _grid(images, nrow)
    h, w = grid.shape
    fig = new_figure((max(w / 28 * scale, 3), h / 28 * scale + 0.5))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def samples_figure(images: torch.Tensor, nrow: int = 8) -> Figure:
    """Fig. 1: random MNIST samples."""
    return _image_figure(images, nrow, "MNIST samples")


def loss_figure(loss: pd.DataFrame) -> Figure:
    """Fig. 4: train and held-out loss (per-image nats) over epochs."""
    fig = new_figure((6, 4))
    ax = fig.add_subplot()
    ax.plot(loss["epoch"], loss["train_loss"], marker="o", ms=3, label="train")
    ax.plot(loss["epoch"], loss["test_loss"], marker="o", ms=3, label="held-out")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per image (BCE + β·KL, nats)")
    ax.set_title("VAE training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def reconstruction_figure(originals: torch.Tensor, recons: torch.Tensor) -> Figure:
    """Fig. 5: originals (top row) over their reconstructions (bottom row)."""
    n = len(originals)
    stacked = torch.cat([torch.as_tensor(originals), torch.as_tensor(recons)])
    return _image_figure(stacked, n, "Top: original | Bottom: reconstruction", scale=0.8)


def latent_figure(latent: pd.DataFrame) -> Figure:
    """Fig. 6: latent means coloured by digit; for k > 2 the first two principal components."""
    zcols = [c for c in latent.columns if c.startswith("z") and c[1:].isdigit()]
    xy, xlabel, ylabel = latent_plane(latent[zcols].to_numpy(dtype=np.float64))
    title = (f"Latent means (z = {len(zcols)}, first two principal components)"
             if len(zcols) > 2 else "Latent means of held-out images")
    if len(zcols) == 1:
        ylabel = ""
    labels = latent["label"].to_numpy()
    fig = new_figure((7, 6))
    ax = fig.add_subplot()
    sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=2,
                    alpha=0.6, rasterized=True)
    cbar = fig.colorbar(sc, ax=ax, ticks=range(10))
    cbar.set_label("digit")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def generated_figure(images: torch.Tensor, nrow: int = 8) -> Figure:
    """Fig. 7: digits decoded from z ~ N(0, I)."""
    return _image_figure(images, nrow, "Digits generated from z ~ N(0, I)")


def manifold_figure(images: torch.Tensor, z: torch.Tensor, n: int) -> Figure:
    """The decoded 2-D latent manifold (z = 2); ticks give the latent code of each cell."""
    grid = _grid(images, n, padding=0)
    z = torch.as_tensor(z).reshape(n, n, 2)
    fig = new_figure((8, 8))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, extent=(0, n, 0, n), interpolation="nearest")
    ticks = list(range(0, n, max(1, n // 5)))
    ax.set_xticks([t + 0.5 for t in ticks], [f"{float(z[0, t, 0]):.2f}" for t in ticks])
    ax.set_yticks([n - t - 0.5 for t in ticks], [f"{float(z[t, 0, 1]):.2f}" for t in ticks])
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title("Decoded latent manifold (codes at quantiles of N(0, 1))")
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (what KNIME image ports take)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure as PNG atomically."""
    atomic_write_bytes(path, figure_png(fig, dpi))
    return Path(path)
