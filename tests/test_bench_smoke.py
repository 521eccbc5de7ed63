"""The benchmark scripts keep working (one tiny epoch each): their timings are positive and
finite, the models they train are vae_core's (the grouped ways train the same models as single
runs), and the Markdown shows the numbers of the JSON. Timings themselves are not compared."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


# every table port of VAE_MNIST that bench_tables.py times
TABLE_PORTS = {
    "training images: Load MNIST -> Train VAE",
    "held-out images: Load MNIST -> Train VAE, Encode, Reconstruct",
    "64 samples + image cells: Load MNIST -> Table View",
    "latent table: Encode -> Scatter Plot",
    "latent explorer + image cells: Encode -> Scatter Plot, Table View, Decode",
    "decoded + image cells: Decode output",
    "reconstructions + image cells: Reconstruct -> Table View",
    "generated + image cells: Generate -> Table View",
    "loss table: Train VAE -> Line Plot",
}


def _positive(*values) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


def _run(script, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bench_train_smoke(tmp_path, mnist_dir):
    from vae_core.config import TrainConfig
    from vae_core.data.splits import load_mnist
    from vae_core.training.loop import train

    md = tmp_path / "b.md"
    res = _run("bench_train.py", "--epochs", "1", "--limit", "1000", "--lk-k", "5",
               "--skip-cli", "--sweep-epochs", "1", "--markdown", str(md))
    core, lab, gemm = res["core"], res["lab"], res["gemm"]
    assert _positive(lab["s_per_epoch"], core["s_per_epoch"], gemm["s_per_epoch"],
                     core["autograd_s_per_epoch_paired"], core["handwritten_s_per_epoch"],
                     res["lab_over_core"], res["core_over_gemm"],
                     core["autograd_over_handwritten"])
    # (b) is vae_core's training: the same config here gives the same held-out number
    cfg = TrainConfig(epochs=1, seed=0, device="cpu", train_limit=1000, eval_limit=1000)
    expected = train(cfg, load_mnist(cfg, mnist_dir), progress=False).history[-1]["test_loss"]
    assert core["test_neg_elbo"] == pytest.approx(expected, rel=1e-6)
    sweep = res["sweep"]
    assert sweep["configs"] == 16 and sweep["epochs"] == 1
    for way in ("vmap", "handwritten"):  # the batched ways train the same models
        assert sweep[f"{way}_max_test_loss_difference"] < 0.05
        assert _positive(sweep["single_runs_s"], sweep[f"{way}_s"])
    text = md.read_text()
    for line in (f"| (c) GEMM floor | {gemm['s_per_epoch']:.3f} s/epoch |",
                 f"{core['s_per_epoch']:.3f} s/epoch |",
                 f"| ratio b/c (target ≤ 1.5) | {res['core_over_gemm']:.2f} |",
                 f"| ratio a/b (target ≥ 5) | {res['lab_over_core']:.2f} |",
                 f"| {lab['test_neg_elbo']:.2f} / {core['test_neg_elbo']:.2f} |",
                 f"| {core['peak_rss_mb']:.0f} MB |",
                 f"| L_k, k = 5, 1,000 images | {core['lk_s']:.2f} s |",
                 f"| {sweep['single_runs_s']:.1f} s |"):
        assert line in text, line


def test_bench_sweep_smoke():
    res = _run("bench_sweep.py", "--epochs", "1", "--limit", "300")
    assert res["configs"] == 16 and res["epochs"] == 1
    for way in ("vmap", "handwritten"):
        assert res[f"{way}_max_test_loss_difference"] < 0.05  # grouped == single up to rounding
        assert _positive(res["single_runs_s"], res[f"{way}_s"])


def test_bench_tables_smoke(tmp_path, mnist_dir):
    """The table-I/O benchmark runs on a small split, times every table port of the workflow in
    both pixel representations, and int32 pixels make smaller port files than float64."""
    out = tmp_path / "tables.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_tables.py"),
                           "--epochs-timed", "1", "--train-limit", "400", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["images"] == [400, 100]
    assert _positive(res["node_start_seconds"], res["train_seconds_30_epochs"])
    for rep in ("float64", "int32"):
        r = res["representations"][rep]
        assert set(r["ports"]) == TABLE_PORTS
        assert all(math.isfinite(v) and v >= 0 for v in r["ports"].values())  # ms-rounded
        assert _positive(r["total_seconds"], r["share_of_training"], r["port_files_mb"])
    assert res["representations"]["int32"]["port_files_mb"] < \
        res["representations"]["float64"]["port_files_mb"]
    assert "pixels as int32: table I/O" in proc.stdout
