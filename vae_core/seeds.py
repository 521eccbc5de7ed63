"""Every random stream of a run, derived from the run's one seed.

Each use of randomness (initial weights, batch order, noise, the images a figure shows, ...) has
its own named stream, so adding or reordering one use never shifts another, and no two seeds'
streams coincide (``seed + 1`` for one purpose would be seed 1's stream for another).
"""

from __future__ import annotations

import numpy as np
import torch

# Stream names and their fixed ids. Append only: an id, once used, keeps its meaning.
STREAMS = {
    "init": 1,  # initial weights
    "split": 2,  # the 80/20 split of the training file (the run seed itself, see below)
    "shuffle": 3,  # batch order
    "noise": 4,  # reparameterization noise while training
    "binarize": 5,  # dynamic binarization of training batches (indexed by epoch)
    "binarize_eval": 6,  # the one fixed binarization of the evaluation images
    "heldout": 7,  # the held-out neg-ELBO estimate (one z per image)
    "samples": 8,  # the training images shown (Fig. 1)
    "reconstructions": 9,  # the held-out images reconstructed (Fig. 5)
    "generated": 10,  # z ~ N(0, I) of the generated digits (Fig. 7)
    "iw": 11,  # importance samples of the bound L_k
    "iw_subset": 12,  # the one-sample ELBO on the L_k subset
    "roughness": 13,  # image pairs of the interpolation roughness
    "decoder_gain": 14,  # points and directions of the decoder-gain estimate
    "explorer": 15,  # the encoded images the KNIME latent explorer shows with their digits
    "reference": 16,  # the held-out neg-ELBO distribution stored with a trained model
    "score": 17,  # one z per image of the neg-ELBO a Score node / `vae-mnist score` gives
    "score_iw": 18,  # importance samples of the L_k a Score node gives
}


def derive_seed(seed: int, stream: str, *index: int) -> int:
    """A 63-bit seed for ``stream`` (and optional indices such as the epoch) of run ``seed``."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}")
    if stream == "split" and not index:
        # the lab splits with random_split(generator=manual_seed(seed)); using the seed itself
        # keeps our 80/20 split image-for-image the lab's
        return int(seed)
    state = np.random.SeedSequence([int(seed), STREAMS[stream], *map(int, index)])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, stream: str, *index: int,
              device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh torch generator on ``device`` seeded for ``stream`` of run ``seed``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream, *index))
