"""`vae-mnist` end to end on a subset, as a user runs it (a real subprocess)."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from vae_core.cli import _parser
from vae_core.training.checkpoint import load_checkpoint

SMALL = ["--epochs", "2", "--train-limit", "1500", "--eval-limit", "300", "--quiet"]


def cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "vae_core.cli", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300, **kw)


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vae-mnist: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def _redrawn(run_dir, summary) -> dict[str, bytes]:
    from vae_core.evaluation import estimators
    from vae_core.outputs import lab_figures
    from vae_core.outputs.tables import images_from_table, read_table
    from vae_core.training.checkpoint import load_model

    table = {n: read_table(run_dir / rel) for n, rel in summary["tables"].items()}
    rec = images_from_table(table["reconstructions"])
    model, _ = load_model(run_dir / "checkpoint.pt")
    z, grid = estimators.manifold(model, 20)
    figures = {
        "samples": lab_figures.samples_figure(images_from_table(table["samples"])),
        "loss": lab_figures.loss_figure(table["loss"]),
        "reconstructions": lab_figures.reconstruction_figure(rec[0::2], rec[1::2]),
        "latent": lab_figures.latent_figure(table["latent"]),
        "generated": lab_figures.generated_figure(images_from_table(table["generated"])),
        "manifold": lab_figures.manifold_figure(grid, z, 20),
    }
    return {name: lab_figures.figure_png(fig) for name, fig in figures.items()}


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory, mnist_dir):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    proc = cli("run", "--run-dir", run_dir, "--data-dir", mnist_dir, *SMALL)
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc


def test_run_writes_every_table_and_figure(lab_run):
    run_dir, proc = lab_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["figures"]) == {"samples", "loss", "reconstructions", "latent",
                                       "generated", "manifold"}
    assert {"loss", "latent", "reconstructions", "generated"} <= set(summary["tables"])
    # every figure is exactly what its table (or, for the manifold, the saved model) draws
    assert {n: (run_dir / rel).read_bytes() for n, rel in summary["figures"].items()} == \
        _redrawn(run_dir, summary)
    loss = pd.read_csv(run_dir / summary["tables"]["loss"])
    history = load_checkpoint(run_dir / "checkpoint.pt")["history"]
    assert loss["epoch"].tolist() == [1, 2]
    assert loss["test_loss"].tolist() == pytest.approx(history["test_loss"])
    latent = pd.read_csv(run_dir / summary["tables"]["latent"])
    assert len(latent) == 300 and {"z1", "z2", "digit"} <= set(latent.columns)
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2
    # the summary printed at the end names the run folder and every output
    assert f"{summary['final_test_loss']:.2f}" in proc.stdout
    assert str(run_dir / "figures" / "latent.png") in proc.stdout


def test_existing_run_needs_resume_or_overwrite(lab_run, mnist_dir):
    run_dir, _ = lab_run
    proc = cli("run", "--run-dir", run_dir, "--data-dir", mnist_dir, *SMALL)
    assert_user_error(proc)
    assert proc.stderr == (f"vae-mnist: error: Run folder {run_dir} already holds a trained run. "
                           "Use --resume to continue it, --overwrite to start it again, or "
                           "another --run-dir.\n")
    # continue to 3 epochs: every other setting comes from the checkpoint
    proc = cli("train", "--run-dir", run_dir, "--data-dir", mnist_dir, "--resume", "--epochs", "3",
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(run_dir / "tables" / "loss.csv")["epoch"].tolist() == [1, 2, 3]
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["epochs"], saved["train_limit"], saved["eval_limit"]) == (3, 1500, 300)


def test_busy_run_folder_is_refused_naming_the_other_run(tmp_path, mnist_dir):
    run_dir = tmp_path / "busy"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / ".lock").write_text(json.dumps(
            {"pid": holder.pid, "host": os.uname().nodename, "started": time.time()}))
        proc = cli("run", "--run-dir", run_dir, "--data-dir", mnist_dir, *SMALL)
        assert_user_error(proc, "in use by another run", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()
    # a stale lock (its process is gone) does not block a new run
    proc = cli("train", "--run-dir", run_dir, "--data-dir", mnist_dir, *SMALL)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args, fragments", [
    (["--epochs", "0"], ["epochs=0"]),
    (["--beta", "-1"], ["beta=-1"]),
    (["--lr", "nan"], ["learning_rate"]),
    (["--train-fraction", "1.5"], ["train_fraction"]),
    (["--batch-size", "5000"], ["batch_size=5000", "larger than the training set"]),
])
def test_bad_settings_give_one_clear_error(tmp_path, mnist_dir, args, fragments):
    proc = cli("train", "--run-dir", tmp_path / "r", "--data-dir", mnist_dir,
               "--train-limit", "1000", *args)
    assert_user_error(proc, *fragments)


def test_config_file_is_read_and_flags_override(tmp_path, mnist_dir):
    cfg = tmp_path / "c.toml"
    cfg.write_text('latent_dim = 3\nbeta = 2.0\nepochs = 5\n')
    proc = cli("train", "--config", cfg, "--epochs", "1", "--run-dir", tmp_path / "r",
               "--data-dir", mnist_dir, "--train-limit", "500", "--eval-limit", "100", "-q")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert (saved["latent_dim"], saved["beta"], saved["epochs"]) == (3, 2.0, 1)
    assert not (tmp_path / "r" / "tables" / "latent.csv").exists()  # train: loss table only


def test_unknown_config_file_key_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"latent_dims": 3}')
    assert_user_error(cli("train", "--config", bad), "Unknown option(s) 'latent_dims'")


def test_missing_data_dir_is_one_clear_error(tmp_path):
    assert_user_error(cli("fetch-data", "--data-dir", tmp_path / "none"), "does not exist")


def test_a_file_as_run_dir_is_one_clear_error(tmp_path, mnist_dir):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_user_error(cli("run", "--run-dir", afile, "--data-dir", mnist_dir, *SMALL),
                      "is a file, not a folder")
    assert afile.read_text() == "x"


def test_fetch_data_verifies_a_folder_into_the_cache(mnist_dir, tmp_path):
    """The four files, decompressed into the cache and checked against the published SHA-256;
    the one line printed names where they are."""
    import hashlib

    from vae_core.data.sources import FILES, SHA256

    home = tmp_path / "home"
    proc = cli("fetch-data", "--data-dir", mnist_dir, env={"VAE_MNIST_HOME": str(home)})
    raw = home / "MNIST" / "raw"
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout == f"MNIST verified (SHA-256) in {raw}\n"
    assert {n: hashlib.sha256((raw / n).read_bytes()).hexdigest() for n in FILES} == SHA256


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path, mnist_dir):
    run_dir = tmp_path / "int"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vae_core.cli", "train", "--run-dir", str(run_dir), "--data-dir",
         str(mnist_dir), "--epochs", "200", "--train-limit", "3000", "--eval-limit", "300", "-q"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ckpt = run_dir / ".incomplete" / "checkpoint.pt"  # the run being built
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    epochs_done = load_checkpoint(ckpt)["epoch"]
    assert 1 <= epochs_done < 200
    resume = f"vae-mnist train --run-dir {run_dir} --resume --data-dir {mnist_dir}"
    assert err == (f"vae-mnist: interrupted. Epoch {epochs_done} of 200 is saved in {ckpt}; "
                   f"continue with `{resume}` (it takes the settings from the checkpoint).\n")
    args = _parser().parse_args(shlex.split(resume)[1:])  # the hint names only real flags
    assert (args.command, args.run_dir, args.resume) == ("train", str(run_dir), True)
    assert os.listdir(run_dir) == [".incomplete"]  # no lock left, nothing shown as finished


def _precision_args(run_dir, mnist_dir) -> list:
    return ["train", "--run-dir", run_dir, "--epochs", "1", "--train-limit", "200",
            "--eval-limit", "50", "--device", "cpu", "--data-dir", mnist_dir, "--quiet"]


def test_precision_bf16_runs_only_where_the_cpu_computes_it_natively(tmp_path, mnist_dir):
    """--precision bf16 runs where the CPU computes bf16 natively; elsewhere it is one clear
    error before anything is written (never a silent, many times slower emulation)."""
    import torch

    from vae_core.training.loop import native_bf16

    run_dir = tmp_path / "run"
    proc = cli(*_precision_args(run_dir, mnist_dir), "--precision", "bf16")
    if native_bf16(torch.device("cpu")):
        assert proc.returncode == 0, proc.stderr
        assert json.loads((run_dir / "config.json").read_text())["precision"] == "bf16"
    else:
        assert_user_error(proc, "precision=bf16 was requested on cpu",
                          "AVX512-BF16 or AMX-BF16", "Use precision=fp32")
        assert not run_dir.exists() or not any(run_dir.iterdir())  # nothing written


def test_precision_config_key_is_saved_as_given(tmp_path, mnist_dir):
    cfg = tmp_path / "c.toml"
    cfg.write_text('precision = "auto"\n')
    proc = cli(*_precision_args(tmp_path / "auto", mnist_dir), "--config", cfg)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "auto" / "config.json").read_text())
    assert saved["precision"] == "auto"  # the setting as given; the run resolves it


def test_unknown_precision_is_refused_by_the_parser(tmp_path, mnist_dir):
    bad = cli(*_precision_args(tmp_path / "bad", mnist_dir), "--precision", "fp16")
    assert bad.returncode == 2 and "invalid choice: 'fp16'" in bad.stderr
    assert not (tmp_path / "bad").exists()
