"""vae_core: a Variational Autoencoder on MNIST as a plain Python library (no KNIME imports).

Subpackages, one per part of the job (README, "Development", lists every module): ``model``
(network, loss), ``data`` (sources, splits), ``training`` (loop, checkpoint, resume, rundir,
jobs, model_file), ``evaluation`` (estimators, run_metrics, scores), ``experiments`` (sweep,
repeat, claims, novelty, saved_settings), ``outputs`` (tables, lab_figures, evaluation_figures, results,
report, html_page), ``nodes`` (steps, experiments, score: what the KNIME node scripts call). At
the top: ``config`` (the settings table), ``seeds``, ``files``, ``errors``, ``cli``.
"""

import importlib.util as _util
import sys as _sys

# Checked before anything imports them, so a KNIME Python environment without PyTorch fails its
# first node with this message, not with a traceback from deep inside a module.
_NEEDS = {"torch": "torch (PyTorch)", "torchvision": "torchvision", "numpy": "numpy",
          "pandas": "pandas<3", "matplotlib": "matplotlib", "PIL": "pillow", "tqdm": "tqdm"}
_missing = [pkg for mod, pkg in _NEEDS.items() if _util.find_spec(mod) is None]
if _missing:
    raise ImportError(
        f"vae_core needs the Python package(s) {', '.join(_missing)}, missing in the Python "
        f"environment {_sys.executable}. Build the environment from requirements-knime-5.5.txt "
        "(pip, a venv) or environment.yml (conda) and select it in KNIME: File > Preferences > "
        "KNIME > Python (Manual: the venv's python; or Conda: vae-mnist-knime) (docs/KNIME.md).")

from vae_core.config import TrainConfig  # noqa: E402
from vae_core.errors import VAEError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["TrainConfig", "VAEError", "__version__"]
