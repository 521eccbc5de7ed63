"""vae_core: a Variational Autoencoder on MNIST as a plain Python library (no KNIME imports).

Modules: ``data`` (MNIST files and splits), ``model``, ``loss``, ``train``, ``evaluate``,
``tables`` (DataFrames for KNIME), ``plots``, ``pipeline`` (the whole lab job), ``cli``.
"""

from .config import TrainConfig
from .errors import VAEError

__version__ = "0.1.0"
__all__ = ["TrainConfig", "VAEError", "__version__"]
