"""Run folders never lie: epochs trained before a stop are kept and every Ctrl-C hint is a
command line the real parser accepts; a new run is built in `.incomplete/` and swapped in whole
only when it has succeeded, under the folder's lock; `evaluate` and `report` read only the
finished run. (RELIABILITY.md, "Run folders".)"""

import json
import os
import shutil
from pathlib import Path

import pytest
from _run_folder import (
    FLAGS,
    RUN_FILES,
    assert_same_losses,
    hint_command,
    interrupt_after,
    run_cli,
    same_weights,
    snapshot,
    visible,
    weights,
)

from vae_core import cli
from vae_core.errors import RunDirError, TrainingError
from vae_core.training import jobs, rundir
from vae_core.training.checkpoint import load_checkpoint
from vae_core.training.loop import train as real_train


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
