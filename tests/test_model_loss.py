"""Model shapes and the loss: stable logits form == the lab's formula; KL closed form == MC."""

import math

import torch
import torch.nn.functional as F

from vae_core.model.loss import kl_divergence, vae_loss
from vae_core.model.network import VAE, reparameterize


def lab_loss(recon_x, x, mu, logvar, beta=1.0):
    """The lab's vae_loss, as written in the seed (sigmoid output + BCE)."""
    recon = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon + beta * kl


def test_logit_loss_equals_lab_formula_on_ordinary_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=g)
    logits = torch.randn(64, 784, generator=g) * 3
    mu, logvar = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g) * 0.5
    for beta in (0.5, 1.0, 4.0):
        ours = vae_loss(logits.double(), x.double(), mu.double(), logvar.double(), beta)
        lab = lab_loss(torch.sigmoid(logits.double()), x.double(), mu.double(), logvar.double(),
                       beta)
        assert torch.allclose(ours.total, lab, rtol=1e-10)
        assert torch.allclose(ours.total, ours.recon + beta * ours.kl)


def test_logit_loss_stays_finite_where_sigmoid_saturates():
    x = torch.tensor([[0.0, 1.0]])
    logits = torch.tensor([[200.0, -200.0]])  # sigmoid -> exactly 1 and 0: worst possible guess
    parts = vae_loss(logits, x, torch.zeros(1, 1), torch.zeros(1, 1))
    assert torch.isfinite(parts.total)
    assert parts.recon.item() == 400.0  # BCE with logits is exact here; the lab's is clamped at 100


def test_kl_closed_form_matches_monte_carlo():
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logvar = torch.tensor([-0.7, 0.3, -2.0], dtype=torch.float64)
    std = torch.exp(0.5 * logvar)
    g = torch.Generator().manual_seed(1)
    z = mu + std * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
    log_q = -0.5 * (((z - mu) / std) ** 2 + logvar + math.log(2 * math.pi))
    log_p = -0.5 * (z ** 2 + math.log(2 * math.pi))
    mc = (log_q - log_p).mean(0)
    assert torch.allclose(kl_divergence(mu, logvar), mc, atol=0.01)


def test_model_shapes_and_output_range():
    model = VAE(latent_dim=5, hidden_dim=32)
    x = torch.rand(7, 784)
    logits, mu, logvar = model(x)
    assert logits.shape == (7, 784) and mu.shape == (7, 5) and logvar.shape == (7, 5)
    # decode gives pixel probabilities: sigmoid of the decoder's logits; a decoder with zero
    # weights decodes every code to sigmoid(bias), the pixel probabilities set in its bias
    p = torch.linspace(0.01, 0.99, 784)
    with torch.no_grad():
        for lin in (model.decoder.fc1, model.decoder.fc2):
            lin.weight.zero_()
        model.decoder.fc2.bias.copy_(torch.logit(p))
    assert torch.allclose(model.decode(mu), p.expand(7, 784), atol=1e-6)
    # the lab's layer layout: 784 -> hidden -> (mu, logvar); latent -> hidden -> 784
    assert model.encoder.fc1.in_features == 784 and model.decoder.fc2.out_features == 784


def test_reparameterize_is_reproducible_with_a_generator():
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 2)
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, torch.zeros_like(a))
