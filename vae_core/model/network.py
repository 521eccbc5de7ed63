"""The lab's VAE: Encoder 784→hidden (ReLU)→(μ, log σ²); Decoder latent→hidden (ReLU)→784.

The decoder returns logits; the sigmoid is applied in :meth:`VAE.decode`, so the loss can use the
numerically stable BCE-with-logits while outputs stay the lab's pixel probabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from vae_core.config import TrainConfig

IMAGE_PIXELS = 28 * 28


class Encoder(nn.Module):
    def __init__(self, latent_dim: int = 2, hidden_dim: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(IMAGE_PIXELS, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc1(x))
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim: int = 2, hidden_dim: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(latent_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, IMAGE_PIXELS)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits; ``torch.sigmoid`` of them is the lab's decoder output."""
        return self.fc2(torch.relu(self.fc1(z)))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I); an explicit generator keeps training reproducible."""
    std = torch.exp(0.5 * logvar)
    eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
    return mu + eps * std


class VAE(nn.Module):
    def __init__(self, latent_dim: int = 2, hidden_dim: int = 256) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.encoder = Encoder(latent_dim, hidden_dim)
        self.decoder = Decoder(latent_dim, hidden_dim)

    @classmethod
    def from_config(cls, config: TrainConfig) -> VAE:
        """The VAE a run's settings describe: the one place a model is built from them."""
        return cls(config.latent_dim, config.hidden_dim)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (pixel logits, μ, log σ²) for a batch of flattened images."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, generator)
        return self.decoder(z), mu, logvar

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities in [0, 1] (the lab's decoder output)."""
        return torch.sigmoid(self.decoder(z))
