"""The benchmark's hand-written (batched) training step gives autograd's losses and gradients,
so the benchmark compares like with like."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from handwritten_step import NAMES, copy_member, group_step, stack_models  # noqa: E402

from vae_core.model.loss import vae_loss  # noqa: E402
from vae_core.model.network import VAE  # noqa: E402


def test_names_follow_the_model():
    assert tuple(n for n, _ in VAE(3, 8).named_parameters()) == NAMES


@pytest.mark.parametrize("latent_dim, betas", [(2, [1.0]), (5, [0.5, 4.0]), (20, [1.0, 2.0, 0.0])])
def test_gradients_match_autograd_for_each_model(latent_dim, betas):
    torch.manual_seed(0)
    models = [VAE(latent_dim, 64).double() for _ in betas]  # different weights per model
    x = torch.rand(33, 784, dtype=torch.float64)
    x[:5] = (x[:5] > 0.5).double()  # some exact 0/1 pixels, like MNIST
    params = stack_models(models)
    sums = group_step(params, x, torch.tensor(betas, dtype=torch.float64),
                      [torch.Generator().manual_seed(7 + g) for g in range(len(betas))])
    for g, (model, beta) in enumerate(zip(models, betas, strict=True)):
        logits, mu, logvar = model(x, generator=torch.Generator().manual_seed(7 + g))
        parts = vae_loss(logits, x, mu, logvar, beta)
        parts.total.backward()
        assert torch.allclose(sums[g], torch.stack(parts).detach(), rtol=1e-12)
        for name, p in model.named_parameters():
            assert torch.allclose(params[name].grad[g], p.grad, rtol=1e-9, atol=1e-9), name


def test_copy_member_round_trip():
    torch.manual_seed(1)
    models = [VAE(2, 16), VAE(2, 16)]
    params = stack_models(models)
    target = copy_member(params, 1, VAE(2, 16))
    for (n, a), b in zip(models[1].state_dict().items(), target.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), n
