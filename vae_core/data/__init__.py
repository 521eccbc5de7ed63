"""MNIST: the four IDX files found or fetched and verified (``sources``), and the training and
evaluation splits in memory (``splits``).
"""
