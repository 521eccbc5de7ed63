"""Evaluation of a trained VAE: held-out loss, latent means, reconstructions, samples."""

from __future__ import annotations

import torch

from .loss import vae_loss
from .model import VAE

EVAL_BATCH = 4096


def _device_of(model: VAE) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def loss_per_image(model: VAE, x: torch.Tensor, beta: float = 1.0,
                   generator: torch.Generator | None = None,
                   batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Mean per-image loss, reconstruction (BCE) and KL, with one z sample per image."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    sums = torch.zeros(3, device=device)
    for chunk in x.split(batch_size):
        chunk = chunk.to(device)
        logits, mu, logvar = model(chunk, generator=generator)
        sums += torch.stack(vae_loss(logits, chunk, mu, logvar, beta))
    model.train(was_training)
    total, recon, kl = (sums / max(len(x), 1)).tolist()
    return {"loss": total, "recon": recon, "kl": kl}


@torch.no_grad()
def encode(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent means and log-variances of ``x`` (on CPU)."""
    device = _device_of(model)
    parts = [model.encode(c.to(device)) for c in x.split(batch_size)]
    mu = torch.cat([p[0] for p in parts]).cpu()
    logvar = torch.cat([p[1] for p in parts]).cpu()
    return mu, logvar


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Decode the latent mean of each image: the deterministic reconstruction (on CPU)."""
    device = _device_of(model)
    return torch.cat([model.decode(model.encode(c.to(device))[0]).cpu()
                      for c in x.split(batch_size)])


@torch.no_grad()
def recon_bce(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-image BCE (nats) between images and reconstructions given as probabilities."""
    return torch.nn.functional.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), x,
                                                    reduction="none").sum(dim=1)


@torch.no_grad()
def generate(model: VAE, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` codes from N(0, I) and decode them; returns (z, pixel probabilities) on CPU."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=g)
    return z, model.decode(z.to(_device_of(model))).cpu()


@torch.no_grad()
def manifold(model: VAE, n: int = 20, lo: float = 0.05, hi: float = 0.95
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an n×n grid of 2-D codes at evenly spaced quantiles of N(0, 1) (z = 2 only).

    Rows run from high z2 (top) to low z2, columns from low z1 to high z1, so the image grid is
    oriented like the latent scatter plot.
    """
    if model.latent_dim != 2:
        raise ValueError("the 2-D manifold needs a model with latent_dim = 2")
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(lo, hi, n))
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)
    return z, model.decode(z.to(_device_of(model))).cpu()
