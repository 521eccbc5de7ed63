"""Using the library changes nothing global in the program that uses it: importing or plotting
selects no matplotlib backend (and touches no pyplot state), training sets no global torch seed.

Each check runs in a fresh interpreter, so nothing imported by other tests can hide a change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_FRESH = """
import json, matplotlib
print(json.dumps({"backend": matplotlib.get_backend(), "rc": matplotlib.rcParams["backend"]}))
"""

_USE = """
import json, sys
import pandas as pd
import torch
seed = torch.initial_seed()  # a fresh interpreter's (random at start-up)
import vae_core.outputs.lab_figures
import vae_core.outputs.evaluation_figures
import vae_core.experiments.sweep
import vae_core.outputs.report
import vae_core.training.jobs
import vae_core.evaluation.run_metrics
import vae_core.experiments.claims
import vae_core.experiments.repeat
import vae_core.nodes.steps
import vae_core.cli
from vae_core.outputs import lab_figures
png = lab_figures.figure_png(lab_figures.loss_figure(pd.DataFrame(
    {"epoch": [1, 2], "train_loss": [3.0, 2.0], "test_loss": [3.0, 2.5]})))
import matplotlib
out = {"backend": matplotlib.get_backend(), "rc": matplotlib.rcParams["backend"],
       "pyplot": "matplotlib.pyplot" in sys.modules, "png": png[:4] == b"\\x89PNG"}
if len(sys.argv) > 1:  # train a tiny model with MNIST from argv[1]
    from vae_core.config import TrainConfig
    from vae_core.data.splits import load_mnist
    from vae_core.training.loop import train
    state = torch.random.get_rng_state()
    config = TrainConfig(epochs=1, train_limit=256, eval_limit=64, device="cpu")
    train(config, load_mnist(config, sys.argv[1]), progress=False)
    out["same_rng_state"] = bool(torch.equal(state, torch.random.get_rng_state()))
out["same_seed"] = torch.initial_seed() == seed
print(json.dumps(out))
"""


def _run(code: str, *args: str) -> dict:
    env = {**os.environ, "MPLBACKEND": "svg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_and_plotting_keep_the_users_matplotlib_backend():
    fresh = _run(_FRESH)
    assert (fresh["backend"], fresh["rc"]) == ("svg", "svg")
    used = _run(_USE)
    assert (used["backend"], used["rc"]) == (fresh["backend"], fresh["rc"])
    assert used["pyplot"] is False and used["png"] is True


def test_importing_and_training_keep_the_global_torch_seed(mnist_dir):
    used = _run(_USE, str(mnist_dir))
    assert used["same_seed"] is True and used["same_rng_state"] is True
