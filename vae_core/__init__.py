"""vae_core: a Variational Autoencoder on MNIST as a plain Python library (no KNIME imports).

Modules: ``data`` (MNIST files and splits), ``model``, ``loss``, ``fast_step`` (hand-written
gradients), ``train`` (single and grouped training), ``checkpoint``, ``evaluate`` (metrics),
``tables`` (DataFrames for KNIME), ``plots`` / ``eval_plots``, ``pipeline`` (the whole lab job),
``sweep`` (experiments), ``report`` (HTML), ``artifact`` + ``steps`` (what the KNIME node
scripts call), ``cli``.
"""

from .config import TrainConfig
from .errors import VAEError

__version__ = "0.1.0"
__all__ = ["TrainConfig", "VAEError", "__version__"]
