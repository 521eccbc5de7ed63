"""The precision setting (fp32 | bf16 | auto) and device auto-selection (CUDA, MPS, CPU).

bf16 needs hardware that computes it natively; where it is missing (this development machine's
CPU, for one) the availability checks are stubbed to exercise the code path, which then runs
bf16 emulated: correct, only slow.
"""

from __future__ import annotations

import pytest
import torch

from vae_core.config import RESUME_MUST_MATCH, TrainConfig
from vae_core.data.splits import MNISTData, Split
from vae_core.errors import CheckpointError, ConfigError
from vae_core.training import loop as train_mod
from vae_core.training.loop import native_bf16, resolve_device, resolve_precision, train


# ----------------------------------------------------------------------------- device
@pytest.mark.parametrize("cuda, mps, want", [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")])
def test_device_auto_picks_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(train_mod, "_mps_available", lambda: mps)
    assert resolve_device("auto").type == want


def test_a_named_device_must_be_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train_mod, "_mps_available", lambda: False)
    with pytest.raises(ConfigError, match="device=mps was requested but Apple's MPS"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="device=cuda was requested"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    assert TrainConfig(device="MPS").device == "mps"


# ----------------------------------------------------------------------------- precision
def test_precision_is_validated_and_part_of_the_recipe():
    assert TrainConfig().precision == "fp32"
    assert TrainConfig(precision="BF16").precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")
    assert "precision" in RESUME_MUST_MATCH  # a resume keeps it


@pytest.mark.parametrize("flags, native", [
    (set(), False), ({"avx2", "avx512f"}, False), ({"avx512_bf16"}, True), ({"amx_bf16"}, True)])
def test_native_bf16_on_the_cpu_needs_bf16_instructions(monkeypatch, flags, native):
    monkeypatch.setattr(train_mod, "_cpu_flags", lambda: flags)
    cpu = torch.device("cpu")
    assert native_bf16(cpu) is native
    if native:
        assert resolve_precision("bf16", cpu) == "bf16"
    else:
        with pytest.raises(ConfigError, match="precision=bf16 was requested on cpu, but this "
                                              "CPU has no AVX512-BF16 or AMX-BF16"):
            resolve_precision("bf16", cpu)
    # auto: bf16 exactly where the CPU computes it natively
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"


def test_auto_is_fp32_on_a_gpu_where_bf16_measured_slower(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    with pytest.raises(ConfigError, match="this GPU does not support bf16"):
        resolve_precision("bf16", torch.device("cuda"))
    with pytest.raises(ConfigError, match="MPS"):
        resolve_precision("bf16", torch.device("mps"))


# ----------------------------------------------------------------------------- training
def _tiny_data(n_train: int = 256, n_eval: int = 64) -> MNISTData:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n_train + n_eval, 784, generator=g) > 0.8).float()
    labels = torch.zeros(n_train + n_eval, dtype=torch.int64)
    ids = torch.arange(n_train + n_eval)
    return MNISTData(train=Split(images[:n_train], labels[:n_train], ids[:n_train], "train"),
                     eval=Split(images[n_train:], labels[n_train:], ids[n_train:], "train"))


@pytest.fixture()
def bf16_cpu(monkeypatch):
    """Pretend this CPU has native bf16 (the computation is then emulated, only slower)."""
    monkeypatch.setattr(train_mod, "_cpu_flags", lambda: {"avx512_bf16"})


def test_bf16_training_keeps_fp32_weights_and_matches_fp32_closely(bf16_cpu):
    data = _tiny_data()
    base = TrainConfig(latent_dim=2, hidden_dim=64, epochs=2, batch_size=64, device="cpu")
    fp32 = train(base, data, progress=False)
    bf16 = train(base.replace(precision="bf16"), data, progress=False)
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    for a, b in zip(fp32.history, bf16.history, strict=True):
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=0.02)
        assert b["train_kl"] == pytest.approx(a["train_kl"], abs=0.3)  # KL is small here
    # bf16 products really are rounder: the results differ, though only slightly
    assert fp32.history[-1]["train_loss"] != bf16.history[-1]["train_loss"]
    again = train(base.replace(precision="bf16"), data, progress=False)
    assert again.history[-1]["train_loss"] == bf16.history[-1]["train_loss"]  # deterministic


def test_bf16_without_native_support_is_refused_before_training(monkeypatch):
    monkeypatch.setattr(train_mod, "_cpu_flags", lambda: {"avx2"})
    with pytest.raises(ConfigError, match="bf16 would be emulated"):
        train(TrainConfig(precision="bf16", device="cpu", epochs=1), _tiny_data(),
              progress=False)


def test_resume_keeps_the_precision(bf16_cpu, tmp_path):
    data = _tiny_data()
    config = TrainConfig(latent_dim=2, hidden_dim=32, epochs=1, batch_size=64, device="cpu",
                         precision="bf16")
    ckpt = tmp_path / "checkpoint.pt"
    train(config, data, checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointError, match="precision"):
        train(config.replace(epochs=2, precision="fp32"), data, checkpoint=ckpt, resume=True,
              progress=False)
    longer = train(config.replace(epochs=2), data, checkpoint=ckpt, resume=True, progress=False)
    straight = train(config.replace(epochs=2), data, progress=False)
    assert longer.history[-1]["train_loss"] == straight.history[-1]["train_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (device tool)")
def test_bf16_on_a_cuda_gpu_trains_close_to_fp32():
    data = _tiny_data(2048, 256)
    base = TrainConfig(latent_dim=2, hidden_dim=256, epochs=3, batch_size=128, device="cuda")
    fp32 = train(base, data, progress=False)
    bf16 = train(base.replace(precision="bf16"), data, progress=False)
    assert all(p.dtype == torch.float32 and p.is_cuda for p in bf16.model.parameters())
    assert bf16.history[-1]["test_loss"] == pytest.approx(fp32.history[-1]["test_loss"],
                                                          rel=0.01)
