"""The benchmark scripts keep working (one tiny epoch each); their figures are not checked here."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bench_train_smoke(tmp_path):
    md = tmp_path / "b.md"
    res = _run("bench_train.py", "--epochs", "1", "--limit", "1000", "--lk-k", "5",
               "--skip-cli", "--sweep-epochs", "1", "--markdown", str(md))
    for part in ("gemm", "core", "lab"):
        assert res[part]["s_per_epoch"] > 0
    assert res["lab_over_core"] > 0 and res["core_over_gemm"] > 0
    assert 100 < res["core"]["test_neg_elbo"] < 600 and 100 < res["lab"]["test_neg_elbo"] < 600
    assert res["core"]["peak_rss_mb"] > 50
    assert res["sweep"]["configs"] == 16 and res["sweep"]["max_test_loss_difference"] < 0.05
    text = md.read_text()
    assert "ratio b/c" in text and "ratio a/b" in text and "sweep speed-up" in text


def test_bench_sweep_smoke():
    res = _run("bench_sweep.py", "--epochs", "1", "--limit", "300")
    assert res["configs"] == 16 and res["grouped_s"] > 0 and res["single_runs_s"] > 0
    assert res["max_test_loss_difference"] < 0.05  # grouped == single up to rounding
