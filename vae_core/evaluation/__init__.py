"""Judging a trained model: the metric functions (``estimators``) and every metric of one model
with its files (``run_metrics``, ``vae-mnist evaluate``).
"""
