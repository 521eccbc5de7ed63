"""VAE loss: BCE summed over pixels + β·KL(q(z|x) ‖ N(0, I)), closed form."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossParts(NamedTuple):
    """Sums over the batch; divide by the batch size for per-image nats."""

    total: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per latent dimension, elementwise (same shape as ``mu``)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> LossParts:
    """The lab's loss, computed from logits (stable where the sigmoid saturates)."""
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = kl_divergence(mu, logvar).sum()
    return LossParts(recon + beta * kl, recon, kl)
