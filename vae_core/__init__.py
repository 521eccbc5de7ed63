"""vae_core: a Variational Autoencoder on MNIST as a plain Python library (no KNIME imports).

One concern per module (README, "Development", lists them): settings ``config`` and random
streams ``seeds``; ``data``; ``model`` and ``loss``; ``train`` and ``checkpoint``; metric
functions ``evaluate`` and one model's full evaluation ``evaluation``; ``tables``; figures
``plots`` / ``eval_plots``; the lab's job ``pipeline`` in run folders ``rundir``; experiments
``sweep``, ``claims``, ``repeat``; ``report`` (HTML) with ``html_page``; ``artifact`` +
``steps`` (what the KNIME node scripts call); ``cli``; ``files``, ``errors``.
"""

from .config import TrainConfig
from .errors import VAEError

__version__ = "0.1.0"
__all__ = ["TrainConfig", "VAEError", "__version__"]
