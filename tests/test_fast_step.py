"""The hand-written training step gives autograd's loss and gradients."""

import pytest
import torch

from vae_core.fast_step import train_step
from vae_core.loss import vae_loss
from vae_core.model import VAE


@pytest.mark.parametrize("latent_dim, beta", [(2, 1.0), (5, 0.5), (20, 4.0)])
def test_gradients_match_autograd(latent_dim, beta):
    torch.manual_seed(0)
    model = VAE(latent_dim, 64).double()
    x = torch.rand(33, 784, dtype=torch.float64)
    x[:5] = (x[:5] > 0.5).double()  # some exact 0/1 pixels, like MNIST

    sums = train_step(model, x, beta, torch.Generator().manual_seed(7))
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad(set_to_none=True)
    logits, mu, logvar = model(x, generator=torch.Generator().manual_seed(7))
    parts = vae_loss(logits, x, mu, logvar, beta)
    parts.total.backward()
    assert torch.allclose(sums, torch.stack(parts).detach(), rtol=1e-12)
    for name, p in model.named_parameters():
        assert torch.allclose(fast[name], p.grad, rtol=1e-9, atol=1e-9), name
