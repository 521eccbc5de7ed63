"""Shared by the run-folder tests (``test_run_folder*.py``): the small run's flags, the files a
run folder holds, and helpers that snapshot folders, call the CLI and parse a message's hint.
The trained runs they share are fixtures in ``conftest.py``."""

import re
import shlex

import pandas as pd
import torch

from vae_core import cli
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
