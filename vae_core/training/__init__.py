"""Training: the loop and its step (``loop``), checkpoints, the resume rule, run folders
(``rundir``), the jobs of ``vae-mnist run`` / ``train`` / ``import-model`` (``jobs``) and the
model as plain data (``model_file``).
"""
