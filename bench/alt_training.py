"""Two alternatives to vae_core's autograd training, for the benchmark only.

- ``train_handwritten``: the step with hand-written gradients (``handwritten_step``), which was
  vae_core's training step before it moved to autograd;
- ``train_vmap``: G models of one shape (a sweep group: same data, own β, own weights, own noise)
  in one step, ``torch.func.vmap`` of ``grad`` over stacked parameters.

Both mirror ``vae_core.training.loop.train``: the same initial weights, batch order and noise streams,
in-memory batches, fused Adam, the held-out estimate after each epoch. They return, per model,
the trained VAE and its history (epoch, train_loss, test_loss, seconds), with no checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from handwritten_step import NAMES, copy_member, group_step, stack_models
from torch.func import functional_call, grad_and_value, vmap

from vae_core import seeds
from vae_core.config import RESULT_SETTINGS, TrainConfig, differences
from vae_core.data.splits import MNISTData
from vae_core.evaluation.estimators import heldout_loss
from vae_core.model.loss import vae_loss
from vae_core.training.loop import new_model


def _check_group(configs: Sequence[TrainConfig]) -> None:
    shared = [k for k in RESULT_SETTINGS if k != "beta"]
    for c in configs:
        if differences(configs[0], c, shared):
            raise ValueError("a group holds configurations that differ only in beta")
        if c.binarize or c.lr_schedule != "constant":
            raise ValueError("the benchmark alternatives cover the lab's recipe only")


def _train_stacked(configs: Sequence[TrainConfig], data: MNISTData, step) -> list[dict]:
    """The shared loop: ``step(params, x, betas, noise_generators)`` sets every ``.grad``."""
    _check_group(configs)
    first = configs[0]
    models = [new_model(c) for c in configs]
    params = stack_models(models)
    optimizer = torch.optim.Adam(list(params.values()), lr=first.learning_rate, fused=True)
    shuffle_gen = seeds.generator(first.seed, "shuffle")
    noise_gens = [seeds.generator(c.seed, "noise") for c in configs]
    betas = torch.tensor([c.beta for c in configs])
    x_all, n = data.train.images, len(data.train)
    histories: list[list[dict]] = [[] for _ in configs]
    for epoch in range(1, first.epochs + 1):
        started = time.perf_counter()
        sums = torch.zeros(len(configs))
        for idx in torch.randperm(n, generator=shuffle_gen).split(first.batch_size):
            sums += step(params, x_all.index_select(0, idx), betas, noise_gens)
            optimizer.step()
        for g, c in enumerate(configs):
            held = heldout_loss(copy_member(params, g, models[g]), data.eval.images, c.seed,
                                c.beta)
            histories[g].append({"epoch": epoch, "train_loss": float(sums[g]) / n,
                                 "test_loss": held["loss"]})
        seconds = (time.perf_counter() - started) / len(configs)
        for h in histories:
            h[-1]["seconds"] = seconds
    return [{"model": copy_member(params, g, models[g]).eval(), "history": histories[g]}
            for g in range(len(configs))]


def _handwritten(params, x, betas, gens) -> torch.Tensor:
    return group_step(params, x, betas, gens)[:, 0]


def train_handwritten(configs: Sequence[TrainConfig], data: MNISTData) -> list[dict]:
    return _train_stacked(configs, data, _handwritten)


def train_vmap(configs: Sequence[TrainConfig], data: MNISTData) -> list[dict]:
    template = new_model(configs[0])

    def loss(p: dict, x: torch.Tensor, eps: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        mu, logvar = functional_call(template.encoder, _sub(p, "encoder."), (x,))
        z = mu + eps * torch.exp(0.5 * logvar)
        logits = functional_call(template.decoder, _sub(p, "decoder."), (z,))
        return vae_loss(logits, x, mu, logvar, beta).total

    grad_fn = vmap(grad_and_value(loss), in_dims=(0, None, 0, 0))
    k = configs[0].latent_dim

    def step(params, x, betas, gens):
        eps = torch.stack([torch.randn(len(x), k, generator=g) for g in gens])
        grads, values = grad_fn(params, x, eps, betas)
        for name in NAMES:
            params[name].grad = grads[name]
        return values.detach()

    for t in template.parameters():
        t.requires_grad_(False)
    return _train_stacked(configs, data, step)


def _sub(p: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}
