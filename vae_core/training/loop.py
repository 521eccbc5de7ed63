"""Training loop: the lab's step — ``VAE.forward``, ``vae_loss``, ``loss.backward()``, Adam —
over in-memory batches drawn by a seeded shuffle, with a checkpoint after every epoch.

Explicit generators (batch order, reparameterization noise, binarization) make a run
reproducible and let ``resume`` continue to exactly the result an uninterrupted run gives.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vae_core import seeds
from vae_core.config import TrainConfig
from vae_core.data.splits import MNISTData
from vae_core.errors import CheckpointError, ConfigError, TrainingError
from vae_core.evaluation.estimators import heldout_loss
from vae_core.evaluation.scores import REFERENCE_KEY, reference_scores
from vae_core.model.loss import vae_loss
from vae_core.model.network import VAE
from vae_core.training.checkpoint import load_checkpoint, save_checkpoint
from vae_core.training.resume import resume_config

HISTORY_COLUMNS = ("epoch", "train_loss", "train_recon", "train_kl",
                   "test_loss", "test_recon", "test_kl", "seconds")


@dataclass
class TrainResult:
    model: VAE
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    reference: dict | None = None  # the held-out neg-ELBO quantiles (evaluation.scores)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """``auto``: a CUDA GPU, else Apple's MPS, else the CPU; a named device must be present."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was requested but no CUDA GPU is available to PyTorch. "
                          "Use device=auto or device=cpu.")
    if name == "mps" and not _mps_available():
        raise ConfigError("device=mps was requested but Apple's MPS is not available to "
                          "PyTorch (it needs an Apple-silicon Mac). Use device=auto or cpu.")
    return torch.device(name)


_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that compute in bf16


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware (not emulated): a CUDA GPU
    that supports bf16, or a CPU with AVX512-BF16 or AMX-BF16 (read on Linux)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(set(_CPU_BF16_FLAGS) & _cpu_flags())
    return False  # MPS: bf16 support varies by chip and macOS; not claimed


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for this run; ``bf16`` on hardware without native bf16 is refused
    (emulated bf16 is many times slower than fp32).

    ``auto`` is bf16 on CPUs with native bf16 instructions, where an epoch is bound by its
    matrix products; fp32 on a GPU, where this small model is bound by kernel launches and bf16
    measured slower, and everywhere else. bf16's quality against fp32 and both speeds:
    BENCHMARKS.md, "Precision"."""
    if name == "fp32":
        return "fp32"
    if name == "auto":
        return "bf16" if device.type == "cpu" and native_bf16(device) else "fp32"
    if not native_bf16(device):
        what = {"cpu": "this CPU has no AVX512-BF16 or AMX-BF16 instructions",
                "cuda": "this GPU does not support bf16",
                "mps": "bf16 on Apple's MPS is not supported here"}.get(device.type, "")
        raise ConfigError(f"precision=bf16 was requested on {device.type}, but {what}: bf16 "
                          "would be emulated, many times slower than fp32. Use precision=fp32 "
                          "(or auto, which picks bf16 only where it is native).")
    return "bf16"


def fused_adam_supported(device: torch.device) -> bool:
    """Fused Adam (one kernel for all parameters) runs on CUDA, and on the CPU from torch 2.4."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    release = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])
    return release >= (2, 4)


def new_model(config: TrainConfig) -> VAE:
    """The initial VAE of a run, from the run's "init" stream (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds.derive_seed(config.seed, "init"))
        return VAE.from_config(config)


def train(config: TrainConfig, data: MNISTData, *, checkpoint: str | Path | None = None,
          resume: bool = False, progress: bool = True,
          on_epoch: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a VAE; save a checkpoint after every epoch; return the model and loss history."""
    device = resolve_device(config.device)
    # bf16: matrix products in bf16 (autocast); weights, optimizer state, loss and KL stay fp32
    if resolve_precision(config.precision, device) == "bf16":
        def precision() -> contextlib.AbstractContextManager:
            return torch.autocast(device.type, dtype=torch.bfloat16)
    else:
        precision = contextlib.nullcontext  # fp32: nothing added to the step
    model = new_model(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 fused=fused_adam_supported(device))
    shuffle_gen = seeds.generator(config.seed, "shuffle")
    noise_gen = seeds.generator(config.seed, "noise", device=device)
    history: list[dict] = []
    if resume:
        history = _resume(config, checkpoint, model, optimizer, shuffle_gen, noise_gen)

    train_x = data.train.images.to(device)
    eval_x = data.eval.images.to(device)
    n = train_x.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    rate = _lr_schedule(config, steps_per_epoch)
    # stop at the first non-finite step loss; on a GPU only once per epoch (no sync per step)
    per_step_check = device.type == "cpu"
    bar = _progress(config.epochs, len(history), progress)
    reference = None
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            started = time.perf_counter()
            model.train()
            sums = torch.zeros(3, device=device)
            order = torch.randperm(n, generator=shuffle_gen).to(device)
            # dynamic binarization: a fresh Bernoulli draw per batch, seeded per epoch (resumable)
            bin_gen = (seeds.generator(config.seed, "binarize", epoch, device=device)
                       if config.binarize else None)
            for i, batch_idx in enumerate(order.split(config.batch_size)):
                if rate is not None:
                    optimizer.param_groups[0]["lr"] = rate((epoch - 1) * steps_per_epoch + i)
                x = train_x.index_select(0, batch_idx)
                if bin_gen is not None:
                    x = torch.bernoulli(x, generator=bin_gen)
                with precision():
                    logits, mu, logvar = model(x, generator=noise_gen)
                parts = vae_loss(logits.float(), x, mu.float(), logvar.float(), config.beta)
                optimizer.zero_grad(set_to_none=True)
                parts.total.backward()
                optimizer.step()
                step = torch.stack(parts).detach()
                if per_step_check:
                    _check_finite(float(step[0]), epoch, config, checkpoint)
                sums += step
            means = (sums / n).tolist()
            _check_finite(means[0], epoch, config, checkpoint)
            held = heldout_loss(model, eval_x, config.seed, config.beta)
            row = {"epoch": epoch, "train_loss": means[0], "train_recon": means[1],
                   "train_kl": means[2], "test_loss": held["loss"], "test_recon": held["recon"],
                   "test_kl": held["kl"], "seconds": time.perf_counter() - started}
            history.append(row)
            if epoch == config.epochs:  # own noise stream: the training streams are untouched
                reference = reference_scores(model, eval_x, config.seed)
            if checkpoint is not None:
                save_checkpoint(checkpoint, _state(config, epoch, model, optimizer, shuffle_gen,
                                                   noise_gen, history, reference))
            if on_epoch is not None:
                on_epoch(row)
            bar.set_postfix(train=f"{row['train_loss']:.2f}", test=f"{row['test_loss']:.2f}")
            bar.update(1)
    finally:
        bar.close()
    if reference is None:  # nothing left to train (a finished run resumed): add them if missing
        reference = reference_scores(model, eval_x, config.seed)
        if checkpoint is not None and Path(checkpoint).is_file():
            state = load_checkpoint(checkpoint)
            if state.get(REFERENCE_KEY) != reference:
                save_checkpoint(checkpoint, {**state, REFERENCE_KEY: reference})
    return TrainResult(model=model.eval(), config=config, history=history, reference=reference)


def _lr_schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float] | None:
    """The learning rate of step t (from 0), or None for the lab's constant rate.

    A function of the step index alone, so a resumed run gets the same rates."""
    if config.lr_schedule == "constant":
        return None
    total = config.epochs * steps_per_epoch
    peak = config.learning_rate
    return lambda t: 0.5 * peak * (1.0 + math.cos(math.pi * t / total))


def _check_finite(loss: float, epoch: int, config: TrainConfig, checkpoint) -> None:
    if not math.isfinite(loss):
        kept = " The checkpoint of the last good epoch is kept." if checkpoint else ""
        raise TrainingError(
            f"The training loss became {loss} in epoch {epoch}: training diverged. "
            f"Lower the learning rate (now {config.learning_rate}).{kept}")


def _state(config: TrainConfig, epoch: int, model: VAE, optimizer: torch.optim.Optimizer,
           shuffle_gen: torch.Generator, noise_gen: torch.Generator, history: list[dict],
           reference: dict | None = None) -> dict:
    """Everything needed to continue bit-identically, as tensors and plain data (on the CPU);
    after the last epoch also the model's reference scores."""
    opt = optimizer.state_dict()
    extra = {} if reference is None else {REFERENCE_KEY: reference}
    return {**extra,
        "config": config.to_dict(), "epoch": epoch,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": {"state": {i: {k: v.detach().cpu().clone() for k, v in st.items()}
                                for i, st in opt["state"].items()},
                      "param_groups": opt["param_groups"]},
        "rng": {"shuffle": shuffle_gen.get_state(), "noise": noise_gen.get_state().cpu()},
        "history": {c: [r[c] for r in history] for c in HISTORY_COLUMNS},
    }


def _resume(config: TrainConfig, path: str | Path | None, model: VAE,
            optimizer: torch.optim.Optimizer, shuffle_gen: torch.Generator,
            noise_gen: torch.Generator) -> list[dict]:
    """Load the checkpoint into model, optimizer and generators; return the loss history."""
    if path is None or not Path(path).is_file():
        raise CheckpointError(f"Nothing to resume: no checkpoint at {path}. Start the run "
                              "without --resume.")
    state = load_checkpoint(path)
    resume_config(state, path, config.to_dict(), error=CheckpointError)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        # the rate follows the schedule of the run being resumed (a changed epoch count is
        # allowed only with the constant rate, see resume_config)
        shuffle_gen.set_state(state["rng"]["shuffle"])
        noise_gen.set_state(state["rng"]["noise"].to("cpu"))
        hist = state["history"]
        return [dict(zip(hist, row, strict=True)) for row in zip(*hist.values(), strict=True)]
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise CheckpointError(f"Checkpoint {path} cannot be resumed "
                              f"({str(exc).splitlines()[0]}).") from None


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="epochs", unit="epoch", disable=not enabled,
                leave=False)
