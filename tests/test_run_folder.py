"""Run folders never lie: a refused or failed `--resume` / `--overwrite` leaves the folder
byte-identical; `--overwrite` replaces the whole run; `--resume` takes its settings from the
checkpoint. Interruptions, the swap and the readers: ``test_run_folder_swap.py``.
(RELIABILITY.md, "Run folders".)"""

import json
import shlex
import shutil

import pytest
from _run_folder import (
    FLAGS,
    FROM_CHECKPOINT,
    RUN_FILES,
    TRAIN_FILES,
    assert_same_losses,
    run_cli,
    same_weights,
    snapshot,
    weights,
)

from vae_core.data.sources import prepare_mnist
from vae_core.errors import DataError, TrainingError
from vae_core.training import jobs, rundir
from vae_core.training.checkpoint import load_checkpoint


# ----------------------------------------------------------------------------- refused
@pytest.mark.parametrize("extra, expected", [
    (["--latent-dim", "5"],
     "latent_dim: checkpoint 3, --latent-dim 5. --resume takes every setting from the "
     "checkpoint; only epochs and device may change. Leave this setting out"),
    (["--lr", "0.01", "--seed", "1"],
     "learning_rate: checkpoint 0.001, --lr 0.01; seed: checkpoint 0, --seed 1. --resume takes "
     "every setting from the checkpoint; only epochs and device may change. Leave these "
     "settings out"),
    (["--binarize"],
     "binarize: checkpoint False, --binarize. --resume takes every setting from the "
     "checkpoint; only epochs and device may change. Leave this setting out"),
])
def test_resume_with_a_contradicting_flag_is_one_error_and_changes_nothing(
        old_run, mnist_dir, capsys, extra, expected):
    before = snapshot(old_run)
    rc, out, err = run_cli(capsys, "run", "--run-dir", old_run, "--data-dir", mnist_dir,
                           "--resume", *extra)
    assert (rc, out) == (2, "")
    assert err == (f"vae-mnist: error: Cannot resume {old_run}/checkpoint.pt: {expected}, or "
                   "start a new run with --overwrite or another --run-dir.")
    assert snapshot(old_run) == before  # config.json included: it used to be rewritten


def test_resume_with_a_contradicting_config_file_value(old_run, mnist_dir, capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("beta = 2.0\nhidden_dim = 64\n")  # hidden_dim agrees: no error for it
    before = snapshot(old_run)
    rc, _, err = run_cli(capsys, "run", "--run-dir", old_run, "--data-dir", mnist_dir,
                         "--resume", "--config", cfg)
    assert rc == 2
    assert err == (f"vae-mnist: error: Cannot resume {old_run}/checkpoint.pt: beta: checkpoint "
                   f"0.5, beta = 2.0 in config file {cfg}. --resume takes every setting from "
                   "the checkpoint; only epochs and device may change. Leave this setting out, "
                   "or start a new run with --overwrite or another --run-dir.")
    assert snapshot(old_run) == before


def test_resume_never_trains_fewer_epochs_than_done(old_run, mnist_dir, capsys):
    before = snapshot(old_run)
    rc, _, err = run_cli(capsys, "train", "--run-dir", old_run, "--data-dir", mnist_dir,
                         "--resume", "--epochs", "1")
    assert rc == 2
    assert err == (f"vae-mnist: error: Cannot resume {old_run}/checkpoint.pt with --epochs 1: "
                   "it has already trained 2 epochs, so give at least 2. Leave epochs out to "
                   "keep 2, or start a new run with --overwrite or another --run-dir.")
    assert snapshot(old_run) == before


def test_resume_under_cosine_keeps_the_epoch_count(tmp_path, mnist_dir, capsys):
    run = tmp_path / "cos"
    flags = ["--epochs", "1", "--train-limit", "500", "--eval-limit", "100", "--hidden-dim",
             "16", "--device", "cpu", "--lr-schedule", "cosine", "-q"]
    assert run_cli(capsys, "train", "--run-dir", run, "--data-dir", mnist_dir, *flags)[0] == 0
    before = snapshot(run)
    rc, _, err = run_cli(capsys, "train", "--run-dir", run, "--data-dir", mnist_dir,
                         "--resume", "--epochs", "3")
    assert rc == 2
    assert err == (f"vae-mnist: error: Cannot resume {run}/checkpoint.pt with --epochs 3: "
                   "under lr_schedule='cosine' the learning rate of every step depends on the "
                   "number of epochs, so it must stay 1. Leave epochs out to keep 1, or start a "
                   "new run with --overwrite or another --run-dir.")
    assert snapshot(run) == before


def test_resume_and_overwrite_together_are_refused(old_run, capsys):
    before = snapshot(old_run)
    rc, _, err = run_cli(capsys, "run", "--run-dir", old_run, "--resume", "--overwrite")
    assert rc == 2
    assert err == ("vae-mnist: error: --resume continues the run in the folder and --overwrite "
                   "replaces it: give one of them, not both.")
    assert snapshot(old_run) == before


def test_nothing_to_resume(tmp_path, capsys):
    run = tmp_path / "empty"
    run.mkdir()
    rc, _, err = run_cli(capsys, "run", "--run-dir", run, "--resume")
    assert rc == 2
    assert err == (f"vae-mnist: error: Nothing to resume: run folder {run} holds no checkpoint. "
                   "Start the run without --resume.")
    assert snapshot(run) == {}


def test_an_unfinished_training_needs_resume_or_overwrite(finished, tmp_path, mnist_dir, capsys):
    run = tmp_path / "run"
    (run / rundir.STAGING).mkdir(parents=True)
    shutil.copy(finished / "checkpoint.pt", run / rundir.STAGING / "checkpoint.pt")
    before = snapshot(run)
    rc, _, err = run_cli(capsys, "run", "--run-dir", run, "--data-dir", mnist_dir, *FLAGS)
    assert rc == 2
    assert err == (f"vae-mnist: error: Run folder {run} holds an unfinished training (epoch 2 "
                   f"of 2, in {run}/.incomplete). Use --resume to continue it, --overwrite to "
                   "start again, or another --run-dir.")
    assert snapshot(run) == before


# ----------------------------------------------------------------------------- failed
def _failure(kind, monkeypatch, argv):
    """Make the command ``argv`` fail before it has trained an epoch; (rc, stderr) expected."""
    if kind == "no MNIST":
        with pytest.raises(DataError) as exc:
            prepare_mnist("/nonexistent")
        return 2, f"vae-mnist: error: {exc.value}"
    exc = TrainingError("boom") if kind == "training raises" else KeyboardInterrupt()

    def train(config, data, **kw):
        raise exc

    monkeypatch.setattr(jobs, "train", train)
    if kind == "training raises":
        return 2, "vae-mnist: error: boom"
    run_dir = argv[argv.index("--run-dir") + 1]
    return 130, (f"vae-mnist: interrupted before an epoch finished; {run_dir} is as it was. To "
                 f"try again, run `{shlex.join(['vae-mnist', *argv])}`.")


@pytest.mark.parametrize("kind", ["no MNIST", "training raises", "Ctrl-C"])
@pytest.mark.parametrize("mode", ["--resume", "--overwrite"])
@pytest.mark.parametrize("unfinished", [False, True], ids=["", "with-unfinished"])
def test_failed_resume_or_overwrite_leaves_the_folder_byte_identical(
        old_run, finished, mnist_dir, monkeypatch, capsys, kind, mode, unfinished):
    if unfinished:  # an earlier training was interrupted after its last epoch
        (old_run / rundir.STAGING).mkdir()
        shutil.copy(finished / "checkpoint.pt", old_run / rundir.STAGING / "checkpoint.pt")
    argv = ["run", "--run-dir", str(old_run), mode,
            *(["--epochs", "3", "-q"] if mode == "--resume" else [*FLAGS, "--seed", "1"]),
            "--data-dir", "/nonexistent" if kind == "no MNIST" else str(mnist_dir)]
    rc, expected = _failure(kind, monkeypatch, argv)
    before = snapshot(old_run)
    assert run_cli(capsys, *argv)[::2] == (rc, expected)
    assert snapshot(old_run) == before


def test_failed_fresh_run_leaves_the_folder_empty(tmp_path, mnist_dir, capsys):
    run = tmp_path / "new"
    rc, _, err = run_cli(capsys, "run", "--run-dir", run, "--data-dir", "/nonexistent", *FLAGS)
    assert rc == 2 and err.startswith("vae-mnist: error: MNIST folder /nonexistent")
    assert snapshot(run) == {}


# ----------------------------------------------------------------------------- overwrite
def test_overwrite_replaces_the_whole_run(old_run, seed1, mnist_dir, capsys):
    old = weights(old_run / "checkpoint.pt")
    rc, out, err = run_cli(capsys, "run", "--run-dir", old_run, "--data-dir", mnist_dir,
                           "--overwrite", *FLAGS, "--seed", "1")
    assert (rc, err) == (0, "")
    assert set(snapshot(old_run)) == RUN_FILES == set(snapshot(seed1))  # nothing old survives
    new = weights(old_run / "checkpoint.pt")
    assert not same_weights(old, new)
    assert same_weights(new, weights(seed1 / "checkpoint.pt"))
    assert json.loads((old_run / "config.json").read_text())["seed"] == 1
    assert_same_losses(old_run, seed1)
    assert "Settings taken from the checkpoint" not in out


def test_overwrite_discards_an_unfinished_training(old_run, finished, seed1, mnist_dir, capsys):
    (old_run / rundir.STAGING).mkdir()
    shutil.copy(finished / "checkpoint.pt", old_run / rundir.STAGING / "checkpoint.pt")
    assert run_cli(capsys, "run", "--run-dir", old_run, "--data-dir", mnist_dir, "--overwrite",
                   *FLAGS, "--seed", "1")[0] == 0
    assert set(snapshot(old_run)) == RUN_FILES
    assert same_weights(weights(old_run / "checkpoint.pt"), weights(seed1 / "checkpoint.pt"))


# ----------------------------------------------------------------------------- resume
def test_resume_takes_the_settings_from_the_checkpoint(old_run, mnist_dir, capsys):
    saved = json.loads((old_run / "config.json").read_text())
    rc, out, err = run_cli(capsys, "train", "--run-dir", old_run, "--data-dir", mnist_dir,
                           "--resume", "--epochs", "3", "-q")
    assert (rc, err) == (0, "")
    assert out.splitlines()[0] == FROM_CHECKPOINT
    assert json.loads((old_run / "config.json").read_text()) == {**saved, "epochs": 3}
    assert load_checkpoint(old_run / "checkpoint.pt")["history"]["epoch"] == [1, 2, 3]
    # a longer-trained model: the old metrics, report and figures are gone with the old run
    assert set(snapshot(old_run)) == TRAIN_FILES


def test_resume_with_device_takes_the_rest_from_the_checkpoint(old_run, mnist_dir, capsys):
    rc, out, _ = run_cli(capsys, "run", "--run-dir", old_run, "--data-dir", mnist_dir,
                         "--resume", "--device", "cpu", "--epochs", "2")
    assert rc == 0
    assert out.splitlines()[0] == FROM_CHECKPOINT.replace(", device='cpu'", "")
    assert set(snapshot(old_run)) == RUN_FILES
