"""Run folders never lie (issue 10): a refused, failed or interrupted `--resume` / `--overwrite`
leaves the folder byte-identical; a new run is built in `.incomplete/` and swapped in whole only
when it has succeeded; `--resume` takes its settings from the checkpoint; every Ctrl-C hint is
a command line the real parser accepts. (RELIABILITY.md, "Run folders".)"""

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from vae_core import cli
from vae_core.data.sources import prepare_mnist
from vae_core.errors import DataError, RunDirError, TrainingError
from vae_core.training import jobs, rundir
from vae_core.training.checkpoint import load_checkpoint
from vae_core.training.loop import train as real_train

# small and fast, and unlike the defaults (so "taken from the checkpoint" shows)
FLAGS = ["--epochs", "2", "--train-limit", "2000", "--eval-limit", "500", "--device", "cpu",
         "--latent-dim", "3", "--hidden-dim", "64", "--beta", "0.5", "-q"]
FROM_CHECKPOINT = ("Settings taken from the checkpoint: latent_dim=3, hidden_dim=64, beta=0.5, "
                   "binarize=False, batch_size=128, learning_rate=0.001, lr_schedule='constant', "
                   "precision='fp32', seed=0, train_fraction=0.8, eval_set='holdout', "
                   "train_limit=2000, "
                   "eval_limit=500, device='cpu'.")
# what `evaluate`, `report` and a user add to a finished run folder
EXTRA = {"metrics.json": '{"neg_elbo": 1.0}\n', "report.html": "<html>old</html>\n",
         "tables/latent_dims.csv": "dim\n1\n", "tables/probe.csv": "probe\n1\n",
         "tables/interpolation.csv": "step\n1\n", "figures/interpolation.png": "old png",
         "notes.txt": "mine\n"}
RUN_FILES = {"checkpoint.pt", "config.json", "summary.json", "tables", "figures",
             *(f"tables/{t}.csv" for t in ("loss", "samples", "latent", "reconstructions",
                                           "generated")),
             *(f"figures/{f}.png" for f in ("samples", "loss", "reconstructions", "latent",
                                            "generated"))}
TRAIN_FILES = {"checkpoint.pt", "config.json", "summary.json", "tables", "figures",
               "tables/loss.csv", "figures/loss.png"}


def snapshot(folder):
    """Every file's bytes and every folder, hidden ones included."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else "<dir>")
            for p in sorted(folder.rglob("*"))}


def visible(snap):
    """The finished run: everything but the run being built."""
    return {k: v for k, v in snap.items() if not k.startswith(rundir.STAGING)}


def run_cli(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err.strip()


def weights(path):
    return load_checkpoint(path)["model"]


def same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def assert_same_losses(a, b):
    """The loss tables of two runs, all but the timing column."""
    pd.testing.assert_frame_equal(pd.read_csv(a / "tables" / "loss.csv").drop(columns="seconds"),
                                  pd.read_csv(b / "tables" / "loss.csv").drop(columns="seconds"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist_dir):
    run = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["run", "--run-dir", str(run), "--data-dir", str(mnist_dir), *FLAGS]) == 0
    return run


@pytest.fixture(scope="module")
def seed1(tmp_path_factory, mnist_dir):
    """The run an `--overwrite ... --seed 1` must produce, made in an empty folder."""
    run = tmp_path_factory.mktemp("seed1") / "run"
    assert cli.main(["run", "--run-dir", str(run), "--data-dir", str(mnist_dir), *FLAGS,
                     "--seed", "1"]) == 0
    return run


@pytest.fixture
def old_run(finished, tmp_path):
    """A finished run plus the metrics, report and notes added to it later."""
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for rel, text in EXTRA.items():
        (run / rel).write_text(text)
    return run


def interrupt_after(monkeypatch, epochs, exc):
    """Make training raise ``exc`` once ``epochs`` new epochs are checkpointed."""
    def train(config, data, **kw):
        done = []

        def on_epoch(row):
            done.append(row)
            if len(done) == epochs:
                raise exc

        return real_train(config, data, **kw, on_epoch=on_epoch)

    monkeypatch.setattr(jobs, "train", train)


def hint_command(message):
    """The command line a message tells the user to run, parsed by the real parser."""
    commands = re.findall(r"`(vae-mnist [^`]*)`", message)
    assert len(commands) == 1, message
    argv = shlex.split(commands[0])[1:]
    return argv, cli._parser().parse_args(argv)  # SystemExit (a failure) on an unknown flag


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


# ----------------------------------------------------------------------------- interrupted
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), TrainingError("boom")],
                         ids=["Ctrl-C", "error"])
@pytest.mark.parametrize("mode", ["fresh", "--overwrite"])
def test_epochs_trained_before_a_stop_are_kept_and_resume_to_the_same_run(
        old_run, tmp_path, finished, seed1, mnist_dir, monkeypatch, capsys, exc, mode):
    run, ref = (tmp_path / "new", finished) if mode == "fresh" else (old_run, seed1)
    extra = [] if mode == "fresh" else ["--overwrite", "--seed", "1"]
    before = snapshot(run) if run.exists() else {}
    interrupt_after(monkeypatch, 1, exc)
    rc, _, err = run_cli(capsys, "run", "--run-dir", run, "--data-dir", mnist_dir, *FLAGS,
                         *extra)
    ckpt = run / ".incomplete" / "checkpoint.pt"
    assert load_checkpoint(ckpt)["epoch"] == 1
    assert visible(snapshot(run)) == before  # the finished run (or nothing) is untouched
    if isinstance(exc, TrainingError):
        assert (rc, err) == (2, "vae-mnist: error: boom")
    else:
        kept = f" Until then {run} keeps showing the previous run." if before else ""
        assert rc == 130
        assert err == (f"vae-mnist: interrupted. Epoch 1 of 2 is saved in {ckpt}; continue "
                       f"with `vae-mnist run --run-dir {run} --resume --data-dir {mnist_dir}` "
                       f"(it takes the settings from the checkpoint).{kept}")
    argv, args = hint_command(err) if rc == 130 else (
        ["run", "--run-dir", str(run), "--resume", "--data-dir", str(mnist_dir)], None)
    monkeypatch.undo()
    rc, out, _ = run_cli(capsys, *argv)  # the command the hint names
    assert rc == 0
    assert set(snapshot(run)) == RUN_FILES  # nothing of the old run, no .incomplete
    assert same_weights(weights(run / "checkpoint.pt"), weights(ref / "checkpoint.pt"))
    assert_same_losses(run, ref)


@pytest.mark.parametrize("argv, expected", [
    (["fetch-data", "--data-dir", "/x y"], "vae-mnist: interrupted. To fetch and verify MNIST, "
     "run `vae-mnist fetch-data --data-dir '/x y'`."),
    (["evaluate", "R", "--iw-k", "10"], "vae-mnist: interrupted before the evaluation finished "
     "(metrics.json is written last). To evaluate R, run `vae-mnist evaluate R --iw-k 10`."),
    (["report", "R", "--no-evaluate"], "vae-mnist: interrupted; no report was written. To "
     "write it, run `vae-mnist report R --no-evaluate`."),
    (["sweep", "--out", "S", "--latent-dims", "2", "--betas", "1", "--epochs", "1"],
     "vae-mnist: interrupted. Finished configurations are kept in S; to continue where it "
     "stopped, run `vae-mnist sweep --out S --latent-dims 2 --betas 1 --epochs 1`."),
    (["repeat", "--out", "S", "--seeds", "0", "1"], "vae-mnist: interrupted. Finished "
     "configurations are kept in S; to continue where it stopped, run `vae-mnist repeat --out "
     "S --seeds 0 1`."),
    (["train", "--run-dir", "R", "--epochs", "1"], "vae-mnist: interrupted before an epoch "
     "finished; R is as it was. To try again, run `vae-mnist train --run-dir R --epochs 1`."),
    (["run", "--run-dir", "R", "--overwrite", "--format", "parquet"], "vae-mnist: interrupted "
     "before an epoch finished; R is as it was. To try again, run `vae-mnist run --run-dir R "
     "--overwrite --format parquet`."),
])
def test_every_interruption_hint_is_a_real_command(argv, expected, tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.chdir(tmp_path)

    def interrupted(*_a, **_kw):
        raise KeyboardInterrupt

    for name in ("_cmd_fetch", "_cmd_evaluate", "_cmd_sweep", "_cmd_report", "_cmd_repeat",
                 "_cmd_train"):
        monkeypatch.setattr(cli, name, interrupted)
    rc, out, err = run_cli(capsys, *argv)
    assert (rc, out, err) == (130, "", expected)
    hinted, args = hint_command(err)
    assert args.command == argv[0] and hinted == argv


def test_a_hint_with_a_flag_the_command_lacks_fails_the_check(capsys):
    with pytest.raises(SystemExit):  # what `evaluate` used to print
        hint_command("`vae-mnist evaluate --run-dir R --resume`")
    assert "unrecognized arguments" in capsys.readouterr().err


def test_the_resume_hint_keeps_the_table_format(tmp_path, mnist_dir, monkeypatch, capsys):
    run = tmp_path / "p"
    interrupt_after(monkeypatch, 1, KeyboardInterrupt())
    rc, _, err = run_cli(capsys, "train", "--run-dir", run, "--data-dir", mnist_dir, *FLAGS,
                         "--format", "parquet")
    assert rc == 130
    argv, args = hint_command(err)
    assert argv == ["train", "--run-dir", str(run), "--resume", "--data-dir", str(mnist_dir),
                    "--format", "parquet"]


# ----------------------------------------------------------------------------- the swap
class Crash(BaseException):
    """A power cut: nothing after it runs."""


def test_a_crash_at_any_point_of_the_swap_ends_in_the_old_or_the_new_run(
        old_run, seed1, monkeypatch):
    old = visible(snapshot(old_run))
    new = snapshot(seed1)
    renames = 1 + len(os.listdir(old_run)) + 1 + len(os.listdir(seed1))
    real_replace = os.replace
    for crash_at in range(renames + 1):
        work = old_run.parent / f"crash{crash_at}"
        shutil.copytree(old_run, work)
        shutil.copytree(seed1, work / rundir.STAGING)
        calls = []

        def replace(src, dst, *, crash_at=crash_at, calls=calls):
            if len(calls) == crash_at:
                raise Crash
            calls.append(src)
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", replace)
        if crash_at < renames:
            with pytest.raises(Crash):
                rundir.publish(work)
        else:
            rundir.publish(work)  # no crash: the last rename was the last step
        monkeypatch.setattr(os, "replace", real_replace)
        after = snapshot(work)
        if crash_at == 0:  # before the commit point: the old run, and the build to resume
            assert visible(after) == old
            assert {k[len(".incomplete/"):]: v for k, v in after.items()
                    if k.startswith(".incomplete/")} == new
        with rundir.run_lock(work):  # whoever locks the folder next finishes the swap
            pass
        assert snapshot(work) == (old | {".incomplete": "<dir>"} | {
            f".incomplete/{k}": v for k, v in new.items()} if crash_at == 0 else new)


def test_the_lock_is_held_through_training_and_swap(tmp_path, mnist_dir, monkeypatch, capsys):
    run = tmp_path / "locked"
    seen = []

    def check(what):
        lock = json.loads((run / ".lock").read_text())
        with pytest.raises(RunDirError, match=f"in use by another run \\(pid {os.getpid()} "):
            jobs.run_training({}, run, resume=True, log=lambda m: None)
        seen.append((what, lock["pid"]))

    def train(config, data, **kw):
        check("training")
        return real_train(config, data, **kw)

    real_finish = rundir.finish_swap

    def finish_swap(run_dir):
        if (run_dir / rundir.COMMITTED).is_dir():
            check("swap")
        return real_finish(run_dir)

    monkeypatch.setattr(jobs, "train", train)
    monkeypatch.setattr(rundir, "finish_swap", finish_swap)
    assert run_cli(capsys, "train", "--run-dir", run, "--data-dir", mnist_dir, *FLAGS)[0] == 0
    assert seen == [("training", os.getpid()), ("swap", os.getpid())]
    assert not (run / ".lock").exists()


# ----------------------------------------------------------------------------- readers
@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_evaluate_and_report_ignore_an_unfinished_training(finished, tmp_path, capsys, command):
    run = tmp_path / "run"
    (run / rundir.STAGING).mkdir(parents=True)
    shutil.copy(finished / "checkpoint.pt", run / rundir.STAGING / "checkpoint.pt")
    before = snapshot(run)
    rc, _, err = run_cli(capsys, command, run)
    assert rc == 2
    assert err == (f"vae-mnist: error: {run} holds no finished run yet, only an unfinished "
                   f"training (epoch 2 of 2, in {run}/.incomplete). Finish it first with "
                   f"`vae-mnist run --run-dir {run} --resume`.")
    assert snapshot(run) == before
    hint_command(err)


def test_report_shows_the_finished_run_not_the_one_being_built(finished, seed1, tmp_path,
                                                                capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    shutil.copytree(seed1, run / rundir.STAGING)
    rc, _, err = run_cli(capsys, "report", run, "--no-evaluate", "-q")
    assert (rc, err) == (0, "")
    report = (run / "report.html").read_text()
    assert ".incomplete" not in report
    assert (run / rundir.STAGING / "config.json").read_bytes() == (
        seed1 / "config.json").read_bytes()


def test_a_folder_that_cannot_be_locked_is_one_clear_error(old_run, monkeypatch, capsys):
    """Tests run as root, who may write anywhere: the refusal is what os.open raises."""
    real_open = rundir.os.open

    def refuse_lock(path, *args, **kw):
        if Path(path).name == rundir.LOCK:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kw)

    monkeypatch.setattr(rundir.os, "open", refuse_lock)
    before = snapshot(old_run)
    rc, _, err = run_cli(capsys, "evaluate", old_run)
    assert rc == 2
    assert err == (f"vae-mnist: error: Cannot lock run folder {old_run}: it is not writable. Give "
                   "yourself write access to it, or copy it to a folder you can write to.")
    assert snapshot(old_run) == before


def test_report_into_a_run_folder_holds_its_lock(finished, tmp_path, capsys):
    old_run = tmp_path / "run"
    shutil.copytree(finished, old_run)
    with rundir.run_lock(old_run):
        before = snapshot(old_run)
        rc, _, err = run_cli(capsys, "report", old_run, "--no-evaluate")
        assert rc == 2 and "is in use by another run" in err
        assert snapshot(old_run) == before
        # a report written elsewhere only reads the folder: no lock needed
        out = tmp_path / "elsewhere.html"
        rc, _, _ = run_cli(capsys, "report", old_run, "--no-evaluate", "--output", out)
        assert rc == 0 and out.read_text().startswith("<!DOCTYPE html>")


def test_report_of_a_damaged_metrics_file_is_one_clear_error(old_run, capsys):
    """old_run's metrics.json holds only neg_elbo (as a file from another version might)."""
    rc, _, err = run_cli(capsys, "report", old_run, "--no-evaluate")
    assert rc == 2
    assert err == (f"vae-mnist: error: {old_run}/metrics.json is damaged or incomplete (no "
                   f"'recon'). Run `vae-mnist evaluate {old_run}` again.")
