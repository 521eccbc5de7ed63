"""Run by test_knime_sources.py in a subprocess to check the missing-KNIME-sources rule (CI
fails, local skips). Its name does not match test_*.py, so the suite itself never collects it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "knime_double"))
import knime_java  # noqa: E402


def test_needs_knime():
    assert knime_java.KNIME_PYTHON.is_dir()
