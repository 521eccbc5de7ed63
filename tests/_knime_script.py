"""Shared by the stand-in tests (``test_knime_double*.py``): a Python Script node's body run
in this process with knio imported, as a script in KNIME starts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "knime_double"))  # test-only

from knime_runner import run_script  # noqa: E402  (puts KNIME's real sources on sys.path)

HEAD = "import knime.scripting.io as knio\nimport pandas as pd\n"
NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def run(body: str, tmp_path, **kw):
    kw.setdefault("flow_variables", {"knime.workspace": str(tmp_path)})
    return run_script(HEAD + body, workflow_dir=tmp_path, **kw)
