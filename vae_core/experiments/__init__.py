"""Many runs: the latent size x beta grid (``sweep``), one recipe over seeds (``repeat``), the
lab's claims judged (``claims``).
"""
