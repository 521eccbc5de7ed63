"""Training loop: in-memory batches drawn by seeded shuffled indices, a hand-differentiated
step (vae_core.fast_step, checked against autograd), fused Adam, per-epoch checkpoint.

Two explicit generators (batch order, reparameterization noise) make a run reproducible and let
``resume`` continue to exactly the result an uninterrupted run gives.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import config_of, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import MNISTData
from .errors import CheckpointError, ConfigError, TrainingError
from .evaluate import loss_per_image
from .fast_step import NAMES, copy_member, group_step, stack_models
from .model import VAE

HISTORY_COLUMNS = ("epoch", "train_loss", "train_recon", "train_kl",
                   "test_loss", "test_recon", "test_kl", "seconds")
# Changing these on resume would silently produce a different model.
_RESUME_FIXED = ("latent_dim", "hidden_dim", "beta", "batch_size", "learning_rate", "lr_schedule",
                 "seed", "train_fraction", "eval_set", "train_limit", "eval_limit", "binarize")


@dataclass
class TrainResult:
    model: VAE
    config: TrainConfig
    history: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but no CUDA GPU is available to PyTorch. "
                          "Use device=auto or device=cpu.")
    return torch.device(name)


def eval_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """Noise for evaluation is independent of the training stream (same every run)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + 7919 * epoch + 17)


def train(config: TrainConfig, data: MNISTData, *, checkpoint: str | Path | None = None,
          resume: bool = False, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a VAE; save a checkpoint after every epoch; return the model and loss history."""
    return train_many([config], data, checkpoints=[checkpoint], resume=resume,
                      progress=progress, on_epoch=on_epoch)[0]


def train_many(configs: Sequence[TrainConfig], data: MNISTData, *,
               checkpoints: Sequence[str | Path | None] | None = None, resume: bool = False,
               progress: bool = True, on_epoch: Callable[[dict], None] | None = None
               ) -> list[TrainResult]:
    """Train several VAEs that differ only in β together, each batch shared by all of them.

    Each model gets what a single run with its config gets: the same initial weights, batch
    order and noise (own generator), so results match single runs up to float rounding, at
    a fraction of the cost. Each model has its own checkpoint, readable by ``train``.
    ``seconds`` in the history is the group's epoch time divided by the number of models.
    """
    configs = list(configs)
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(configs)
    first = configs[0]
    if any(_group_key(c) != _group_key(first) for c in configs):
        raise ValueError("train_many trains models that differ only in beta")
    G = len(configs)
    device = resolve_device(first.device)
    models = []
    for c in configs:
        torch.manual_seed(c.seed)  # parameter initialisation, as in a single run
        models.append(VAE(c.latent_dim, c.hidden_dim))
    params = {n: t.to(device) for n, t in stack_models(models).items()}
    models = [m.to(device) for m in models]
    # fused Adam: one kernel for all parameters instead of a Python loop (measured faster on CPU)
    optimizer = torch.optim.Adam(list(params.values()), lr=first.learning_rate, fused=True)
    shuffle_gen = torch.Generator().manual_seed(first.seed)
    noise_gens = [torch.Generator(device=device).manual_seed(c.seed + 1) for c in configs]
    betas = torch.tensor([c.beta for c in configs], device=device)
    histories: list[list[dict]] = [[] for _ in configs]
    if resume:
        histories = _resume(configs, checkpoints, params, optimizer, shuffle_gen, noise_gens)

    train_x = data.train.images.to(device)
    eval_x = data.eval.images.to(device)
    n = train_x.shape[0]
    start_epoch = len(histories[0]) + 1
    steps_per_epoch = math.ceil(n / first.batch_size)
    rate = _lr_schedule(first, steps_per_epoch)
    # stop at the first non-finite step loss; on a GPU only once per epoch (no sync per step)
    per_step_check = device.type == "cpu"
    bar = _progress(first.epochs, start_epoch - 1, progress, G)
    try:
        for epoch in range(start_epoch, first.epochs + 1):
            started = time.perf_counter()
            sums = torch.zeros(G, 3, device=device)
            order = torch.randperm(n, generator=shuffle_gen).to(device)
            # dynamic binarization: a fresh Bernoulli draw per batch, seeded per epoch (resumable)
            bin_gen = (torch.Generator(device=device).manual_seed(first.seed * 1_000_003 + epoch)
                       if first.binarize else None)
            for i, batch_idx in enumerate(order.split(first.batch_size)):
                if rate is not None:
                    optimizer.param_groups[0]["lr"] = rate((epoch - 1) * steps_per_epoch + i)
                x = train_x.index_select(0, batch_idx)
                if bin_gen is not None:
                    x = torch.bernoulli(x, generator=bin_gen)
                step = group_step(params, x, betas, noise_gens)  # sets every .grad
                if per_step_check:
                    _check_finite(step[:, 0].tolist(), epoch, configs, checkpoints)
                sums += step
                optimizer.step()
            means = (sums / n).tolist()
            _check_finite([m[0] for m in means], epoch, configs, checkpoints)
            rows = []
            for g, c in enumerate(configs):
                copy_member(params, g, models[g])
                held = loss_per_image(models[g], eval_x, c.beta,
                                      eval_generator(c.seed, epoch, device))
                rows.append({"epoch": epoch, "train_loss": means[g][0],
                             "train_recon": means[g][1], "train_kl": means[g][2],
                             "test_loss": held["loss"], "test_recon": held["recon"],
                             "test_kl": held["kl"]})
            seconds = (time.perf_counter() - started) / G
            for g, row in enumerate(rows):
                row["seconds"] = seconds
                histories[g].append(row)
                if checkpoints[g] is not None:
                    save_checkpoint(checkpoints[g], _member_state(
                        configs[g], g, epoch, params, optimizer, shuffle_gen, noise_gens[g],
                        histories[g]))
            for row in rows if on_epoch is not None else ():
                on_epoch(row)
            bar.set_postfix(train=f"{rows[0]['train_loss']:.2f}",
                            test=f"{rows[0]['test_loss']:.2f}")
            bar.update(1)
    finally:
        bar.close()
    results = []
    for g, c in enumerate(configs):
        model = copy_member(params, g, models[g]).eval()
        results.append(TrainResult(model=model, config=c, history=histories[g]))
    return results


def _lr_schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float] | None:
    """The learning rate of step t (from 0), or None for the lab's constant rate.

    A function of the step index alone, so a resumed run gets the same rates."""
    if config.lr_schedule == "constant":
        return None
    total = config.epochs * steps_per_epoch
    peak = config.learning_rate
    return lambda t: 0.5 * peak * (1.0 + math.cos(math.pi * t / total))


def _check_finite(losses: list[float], epoch: int, configs: Sequence[TrainConfig],
                  checkpoints: Sequence) -> None:
    for c, loss, ckpt in zip(configs, losses, checkpoints, strict=True):
        if not math.isfinite(loss):
            kept = " The checkpoint of the last good epoch is kept." if ckpt else ""
            which = f" (model with beta={c.beta:g})" if len(configs) > 1 else ""
            raise TrainingError(
                f"The training loss became {loss} in epoch {epoch}{which}: training diverged. "
                f"Lower the learning rate (now {c.learning_rate}).{kept}")


def _group_key(config: TrainConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k != "beta"}


def _member_state(config: TrainConfig, g: int, epoch: int, params: dict, optimizer,
                  shuffle_gen: torch.Generator, noise_gen: torch.Generator,
                  history: list[dict]) -> dict:
    """What ``train`` checkpoints for model ``g`` of a group (slices cloned: no shared storage)."""
    opt = optimizer.state_dict()
    state = {i: {k: (v[g].detach().cpu().clone() if k != "step" else v.detach().cpu().clone())
                 for k, v in st.items()} for i, st in opt["state"].items()}
    return {
        "config": config.to_dict(), "epoch": epoch,
        "model": {n: params[n][g].detach().cpu().clone() for n in NAMES},
        "optimizer": {"state": state, "param_groups": opt["param_groups"]},
        "rng": {"shuffle": shuffle_gen.get_state(), "noise": noise_gen.get_state()},
        "history": {c: [r[c] for r in history] for c in HISTORY_COLUMNS},
    }


def _resume(configs, checkpoints, params, optimizer, shuffle_gen, noise_gens) -> list[list[dict]]:
    """Load every member's checkpoint into the stacked state; return the histories."""
    states = []
    for c, path in zip(configs, checkpoints, strict=True):
        if path is None or not Path(path).is_file():
            raise CheckpointError(f"Nothing to resume: no checkpoint at {path}. Start the "
                                  "run without --resume.")
        state = load_checkpoint(path)
        _check_resumable(config_of(state, path), c, path)
        states.append(state)
    if len({s["epoch"] for s in states}) > 1:
        raise CheckpointError("The checkpoints of this group stopped at different epochs "
                              f"({', '.join(str(p) for p in checkpoints)}); resume them one by "
                              "one.")
    path = checkpoints[0]
    try:
        for n in NAMES:
            params[n].copy_(torch.stack([s["model"][n] for s in states]))
        opts = [s["optimizer"] for s in states]
        optimizer.load_state_dict({
            "state": {i: {k: (torch.stack([o["state"][i][k] for o in opts]) if k != "step"
                              else v) for k, v in st.items()}
                      for i, st in opts[0]["state"].items()},
            "param_groups": opts[0]["param_groups"]})
        shuffle_gen.set_state(states[0]["rng"]["shuffle"])
        for gen, s in zip(noise_gens, states, strict=True):
            gen.set_state(s["rng"]["noise"].to("cpu"))
        histories = []
        for s in states:
            hist = s["history"]
            histories.append([dict(zip(hist, row, strict=True))
                              for row in zip(*hist.values(), strict=True)])
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"Checkpoint {path} cannot be resumed "
                              f"({str(exc).splitlines()[0]}).") from None
    return histories


def _check_resumable(saved: TrainConfig, wanted: TrainConfig, path) -> None:
    diffs = [f"{k}: checkpoint {getattr(saved, k)!r}, now {getattr(wanted, k)!r}"
             for k in _RESUME_FIXED if getattr(saved, k) != getattr(wanted, k)]
    if wanted.lr_schedule != "constant" and saved.epochs != wanted.epochs:
        # the decay is spread over the planned epochs: another count changes every rate
        diffs.append(f"epochs: checkpoint {saved.epochs}, now {wanted.epochs} "
                     f"(lr_schedule={wanted.lr_schedule} fixes the epoch count)")
    if diffs:
        raise CheckpointError(f"Cannot resume from {path}: it was trained with other settings ("
                              + "; ".join(diffs) + "). Use the same settings, or a new run folder.")


def _progress(total: int, initial: int, enabled: bool, models: int = 1):
    from tqdm.auto import tqdm

    desc = "epochs" if models == 1 else f"epochs ({models} models)"
    return tqdm(total=total, initial=initial, desc=desc, unit="epoch", disable=not enabled,
                leave=False)
