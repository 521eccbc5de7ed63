"""The network and its objective: the lab's VAE (``network``) and its loss (``loss``).
"""
