"""Generator of the KNIME workflows (build.py) from a declarative spec (spec.py) and nodes/*.py,
plus the KNIME batch wrapper (batch.py). Not part of the installed vae_core package."""
