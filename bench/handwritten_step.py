"""The training step with hand-written gradients, for G models of one shape at once.

Kept only as a benchmark column (bench/alt_training.py): this used to be vae_core's
training step; vae_core now trains with autograd. Why it existed: on a 2-core CPU the lab's
model is so small that autograd's bookkeeping costs a large share of each step, and a sweep
trains many such models. Here G models (same layer sizes, own weights, own β, own noise) share
each batch: the first layer of all G is one wide matrix
product, the rest are batched products. With G = 1 it is plain single-model training. Every
gradient is checked against autograd in ``tests/test_bench_handwritten.py``.

Per model (batch B, pixels D = 784, hidden H, latent k):
  a1 = x W1ᵀ + b1, h1 = relu(a1); μ = h1 Wμᵀ + bμ; s = h1 Wsᵀ + bs (log σ²)
  z = μ + ε·exp(s/2); a3 = z W3ᵀ + b3, h3 = relu(a3); ℓ = h3 W4ᵀ + b4 (pixel logits)
  loss = Σ softplus(ℓ) − x·ℓ  +  β · Σ −½(1 + s − μ² − eˢ)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from vae_core.model.network import VAE

# parameter names in VAE.named_parameters() order (the optimizer's order, too)
NAMES = ("encoder.fc1.weight", "encoder.fc1.bias", "encoder.fc_mu.weight", "encoder.fc_mu.bias",
         "encoder.fc_logvar.weight", "encoder.fc_logvar.bias", "decoder.fc1.weight",
         "decoder.fc1.bias", "decoder.fc2.weight", "decoder.fc2.bias")


def stack_models(models: Sequence[VAE]) -> dict[str, torch.Tensor]:
    """Parameters of G same-shaped models as tensors with a leading dimension G."""
    states = [m.state_dict() for m in models]
    return {n: torch.stack([s[n].detach() for s in states]).contiguous() for n in NAMES}


def copy_member(params: dict[str, torch.Tensor], g: int, model: VAE) -> VAE:
    """Write model ``g`` of the stack into ``model`` (in place) and return it."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name][g])
    return model


@torch.no_grad()
def group_step(params: dict[str, torch.Tensor], x: torch.Tensor, betas: torch.Tensor,
               generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """Forward + backward of every model on batch ``x``; sets ``.grad`` of every stacked tensor.

    ``betas`` has shape [G]; ``generators`` gives each model its own reparameterization noise.
    Returns the summed (total, recon, kl) per model, shape [G, 3] (no host sync).
    """
    P = params
    G, H, D = P["encoder.fc1.weight"].shape
    B = x.shape[0]
    beta = betas.view(G, 1, 1)

    # encoder: the first layer of all G models is one [B, D] x [D, G*H] product
    a1 = torch.addmm(P["encoder.fc1.bias"].view(-1), x, P["encoder.fc1.weight"].view(G * H, D).t())
    a1 = a1.view(B, G, H).transpose(0, 1)                                     # [G, B, H]
    h1 = a1.clamp_min(0)
    mu = torch.baddbmm(P["encoder.fc_mu.bias"].unsqueeze(1), h1,
                       P["encoder.fc_mu.weight"].transpose(1, 2))             # [G, B, k]
    logvar = torch.baddbmm(P["encoder.fc_logvar.bias"].unsqueeze(1), h1,
                           P["encoder.fc_logvar.weight"].transpose(1, 2))
    std = torch.exp(0.5 * logvar)
    eps = torch.stack([torch.randn(std.shape[1:], generator=gen, device=x.device, dtype=x.dtype)
                       for gen in generators])
    z = torch.addcmul(mu, eps, std)
    a3 = torch.baddbmm(P["decoder.fc1.bias"].unsqueeze(1), z,
                       P["decoder.fc1.weight"].transpose(1, 2))               # [G, B, H]
    h3 = a3.clamp_min(0)
    logits = torch.baddbmm(P["decoder.fc2.bias"].unsqueeze(1), h3,
                           P["decoder.fc2.weight"].transpose(1, 2))           # [G, B, D]

    xs = x.expand(G, B, D)
    recon = F.binary_cross_entropy_with_logits(logits, xs, reduction="none").sum((1, 2))
    var = std * std
    kl = -0.5 * (1 + logvar - mu * mu - var).sum((1, 2))

    # backward, layer by layer from the output
    g_logits = torch.sigmoid(logits).sub_(xs)                                 # dL/dℓ
    _grads(P, "decoder.fc2", g_logits, h3)
    g_a3 = torch.bmm(g_logits, P["decoder.fc2.weight"]).mul_(a3 > 0)
    _grads(P, "decoder.fc1", g_a3, z)
    g_z = torch.bmm(g_a3, P["decoder.fc1.weight"])
    g_mu = g_z + beta * mu
    g_logvar = 0.5 * (g_z * eps * std + beta * (var - 1))
    _grads(P, "encoder.fc_mu", g_mu, h1)
    _grads(P, "encoder.fc_logvar", g_logvar, h1)
    g_a1 = torch.baddbmm(torch.bmm(g_mu, P["encoder.fc_mu.weight"]), g_logvar,
                         P["encoder.fc_logvar.weight"]).mul_(a1 > 0)           # [G, B, H]
    P["encoder.fc1.bias"].grad = g_a1.sum(1)
    flat = g_a1.transpose(0, 1).reshape(B, G * H)                             # one product again
    P["encoder.fc1.weight"].grad = (flat.t() @ x).view(G, H, D)
    return torch.stack([recon + betas * kl, recon, kl], dim=1)


def _grads(P: dict[str, torch.Tensor], layer: str, g_out: torch.Tensor, inp: torch.Tensor) -> None:
    """Weight and bias gradients of ``y = inp Wᵀ + b`` (batched over models) given dL/dy."""
    P[f"{layer}.weight"].grad = torch.bmm(g_out.transpose(1, 2), inp)
    P[f"{layer}.bias"].grad = g_out.sum(1)
