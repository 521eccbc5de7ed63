"""One small sweep shared by test_sweep.py and test_report.py (made once per test session).

A plain cached function rather than a fixture so that two test modules can share it without
touching conftest.py.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

# the settings of the small sweep, for tests that run it again with the library
SMALL_SWEEP = {"base": {"epochs": 1, "train_limit": 800, "eval_limit": 200, "device": "cpu"},
               "latent_dims": [2, 3], "betas": [1.0, 2.0], "iw_k": 10, "iw_images": 40}


@functools.cache
def small_sweep(mnist_dir: Path) -> Path:
    """A 2 × 2 sweep (z ∈ {2, 3}, β ∈ {1, 2}), one epoch on 800 images, run through the CLI."""
    from vae_core.cli import main

    root = Path(tempfile.mkdtemp(prefix="vae-small-sweep-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    out = root / "sweep"
    rc = main(["sweep", "--data-dir", str(mnist_dir), "-q", "--epochs", "1",
               "--train-limit", "800", "--eval-limit", "200", "--device", "cpu",
               "--latent-dims", "2", "3", "--betas", "1", "2", "--iw-k", "10",
               "--iw-images", "40", "--out", str(out)])
    assert rc == 0
    return out
