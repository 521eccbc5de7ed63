"""vae_core: a Variational Autoencoder on MNIST as a plain Python library (no KNIME imports).

One concern per module (README, "Development", lists them): settings ``config`` and random
streams ``seeds``; the MNIST files ``mnist_files`` and their splits ``data``; ``model`` and
``loss``; ``train``, ``checkpoint`` and the rule of a resume ``resume``; metric functions
``evaluate`` and one model's full evaluation ``evaluation``; ``tables`` (and their files); the
lab's tables and figures of a model ``results``; figures ``plots`` / ``eval_plots``; the lab's
job ``pipeline`` in run folders ``rundir``; experiments ``sweep``, ``claims``, ``repeat``;
``report`` (HTML) with ``html_page``; ``artifact`` + ``steps`` (what the KNIME node scripts
call); ``cli``; ``files``, ``errors``.
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
        f"environment {_sys.executable}. Create the environment from environment.yml and select "
        "it in KNIME: File > Preferences > KNIME > Python (Conda, the environment "
        "vae-mnist-knime), or outside KNIME `pip install` them (docs/KNIME.md).")

from .config import TrainConfig  # noqa: E402
from .errors import VAEError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["TrainConfig", "VAEError", "__version__"]
