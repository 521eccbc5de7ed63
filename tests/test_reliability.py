"""Interruptions and output failures never lose results (RELIABILITY.md lists every case)."""

import errno
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from vae_core.config import TrainConfig
from vae_core.errors import ConfigError, RunDirError, WriteError
from vae_core.outputs import tables
from vae_core.training import rundir
from vae_core.training.checkpoint import load_checkpoint

ARGS = ["--epochs", "4", "--train-limit", "3000", "--eval-limit", "300", "-q"]
COLS = ["epoch", "train_loss", "train_recon", "train_kl", "test_loss", "test_recon", "test_kl"]


def _train(run_dir, mnist_dir, *extra):
    return [sys.executable, "-m", "vae_core.cli", "train", "--run-dir", str(run_dir),
            "--data-dir", str(mnist_dir), *ARGS, *extra]


def test_kill_9_mid_epoch_then_resume_is_bit_identical(tmp_path, mnist_dir):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert subprocess.run(_train(ref, mnist_dir), capture_output=True).returncode == 0
    proc = subprocess.Popen(_train(cut, mnist_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = cut / ".incomplete" / "checkpoint.pt"  # the run being built; swapped in when done
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ckpt.exists() and load_checkpoint(ckpt)["epoch"] >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.1)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint(ckpt)["epoch"]
    assert done < 4, "the run finished before it could be killed; make it longer"
    assert sorted(os.listdir(cut)) == [".incomplete", ".lock"]  # the killed run's stale lock
    resumed = subprocess.run(_train(cut, mnist_dir, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr  # the stale .lock of the killed run is taken over
    a = pd.read_csv(ref / "tables" / "loss.csv")[COLS]
    b = pd.read_csv(cut / "tables" / "loss.csv")[COLS]
    pd.testing.assert_frame_equal(a, b)
    wa = load_checkpoint(ref / "checkpoint.pt")["model"]
    wb = load_checkpoint(cut / "checkpoint.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sorted(os.listdir(cut)) == sorted(os.listdir(ref))  # swapped in: no .incomplete


def test_failed_table_write_keeps_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "loss.csv"
    tables.write_table(pd.DataFrame({"a": [1, 2]}), path)
    before = path.read_bytes()

    def half_written(self, fh, **_kw):
        fh.write(b"a\n9\n")
        raise OSError(errno.ENOSPC, "No space left on device", str(fh.name))

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    with pytest.raises(WriteError) as caught:
        tables.write_table(pd.DataFrame({"a": [3]}), path)
    assert str(caught.value) == (f"Cannot write {path}: the disk is full (no space left on "
                                 "device). Free some space, or choose a folder on another disk.")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["loss.csv"]


def test_run_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirError, match="not writable"):
        rundir.prepare_run_dir(blocker / "sub")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error(small_data):
    from vae_core.training.loop import train

    with pytest.raises(ConfigError, match="no CUDA GPU"):
        train(TrainConfig(device="cuda", epochs=1), small_data, progress=False)


@pytest.mark.parametrize("field, value, fragment", [
    ("latent_dim", 0, "latent_dim=0"), ("latent_dim", 2.5, "must be an integer"),
    ("latent_dim", "two", "must be an integer"), ("epochs", "abc", "got 'abc'"),
    ("beta", -0.1, "beta=-0.1"), ("batch_size", 0, "batch_size=0"),
    ("learning_rate", 0, "learning_rate=0"), ("learning_rate", float("nan"), "finite"),
    ("train_fraction", 1.0, "strictly between 0 and 1"), ("device", "tpu", "one of"),
    ("lr_schedule", "step", "lr_schedule='step'"),
    ("epochs", True, "boolean"),
])
def test_every_bad_setting_is_refused(field, value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(**{field: value})


def test_settings_from_strings_like_flow_variables_are_accepted():
    cfg = TrainConfig.from_dict({"epochs": "5", "beta": "0.5", "latent_dim": 3.0, "device": "CPU"})
    assert (cfg.epochs, cfg.beta, cfg.latent_dim, cfg.device) == (5, 0.5, 3, "cpu")


def test_sigint_handler_leaves_no_lock(tmp_path):
    """The lock is released when a run ends with an error."""
    run_dir = rundir.prepare_run_dir(tmp_path / "r")
    with pytest.raises(RuntimeError), rundir.run_lock(run_dir):
        raise RuntimeError("boom")
    assert not (run_dir / ".lock").exists()
    assert os.listdir(run_dir) == []
