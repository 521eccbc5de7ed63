"""The sweep: outputs, resumption after an interruption, settings checks, claim verdicts."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _small_sweep import small_sweep

from vae_core.cli import main
from vae_core.config import TrainConfig
from vae_core.errors import RunDirError
from vae_core.sweep import EXPERIMENT_COLUMNS, config_name, judge_claims, run_sweep

FAST = {"iw_k": 10, "iw_images": 40, "lab_outputs": False, "figures": False}


@pytest.fixture(scope="module")
def base() -> TrainConfig:
    return TrainConfig(epochs=1, train_limit=800, eval_limit=200, device="cpu")


@pytest.fixture(scope="module")
def finished_sweep(mnist_dir):
    """A 2 × 2 sweep run through the CLI (shared with test_report.py)."""
    return small_sweep(mnist_dir)


def test_sweep_writes_table_figures_and_claims(finished_sweep):
    exp = pd.read_csv(finished_sweep / "experiments.csv")
    assert list(exp.columns) == EXPERIMENT_COLUMNS
    assert exp["config"].tolist() == ["z2_beta1", "z2_beta2", "z3_beta1", "z3_beta2"]
    assert (exp["iw_k"] == 10).all() and (exp["iw_images"] == 40).all()
    assert exp[["recon", "kl", "neg_elbo", "iw_bound"]].notna().all().all()
    assert ((exp["neg_elbo"] - exp["recon"] - exp["kl"]).abs() < 1e-6).all()
    assert (exp["active_units"] <= exp["latent_dim"]).all()
    for fig in ("tradeoff", "metrics_vs_latent", "kl_per_dim", "loss_curves", "smoothness",
                "interpolations"):
        assert (finished_sweep / "figures" / f"{fig}.png").stat().st_size > 1000
    dims = pd.read_csv(finished_sweep / "kl_per_dim.csv")
    assert len(dims) == 2 * 2 + 2 * 3
    claims = json.loads((finished_sweep / "claims.json").read_text())
    assert [c["id"] for c in claims["claims"]] == ["latent_size", "beta_reconstruction",
                                                  "beta_smoothness"]
    for c in claims["claims"]:
        assert c["verdict"] in {"supported", "partly supported", "not supported",
                                "supported at β = 1"}
        assert c["numbers"]
    md = (finished_sweep / "claims.md").read_text()
    assert "Verdict:" in md and "interpolation roughness" in md
    # every configuration folder is a full run folder (the report reads it like one)
    cfg = finished_sweep / "configs" / "z2_beta1"
    for name in ("config.json", "summary.json", "metrics.json", "checkpoint.pt",
                 "figures/interpolation.png", "figures/manifold.png", "tables/probe.csv"):
        assert (cfg / name).is_file(), name


def test_interrupted_sweep_resumes_without_redoing_finished_configs(tmp_path, mnist_dir, base):
    out = tmp_path / "s"

    def stop_after_first(name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(out, base, latent_dims=[2], betas=[1, 4], data_dir=mnist_dir, log=lambda m: None,
                  on_config_done=stop_after_first, **FAST)
    first = out / "configs" / "z2_beta1" / "metrics.json"
    stamp = first.stat().st_mtime_ns
    assert not (out / "configs" / "z2_beta4" / "metrics.json").exists()
    partial = pd.read_csv(out / "experiments.csv")
    assert partial["config"].tolist() == ["z2_beta1"]  # saved as soon as it finished

    res = run_sweep(out, base, latent_dims=[2], betas=[1, 4], data_dir=mnist_dir,
                    log=lambda m: None, **FAST)
    assert res.reused == ["z2_beta1"] and res.trained == ["z2_beta4"]
    assert first.stat().st_mtime_ns == stamp
    assert res.experiments["config"].tolist() == ["z2_beta1", "z2_beta4"]


def test_interrupted_configuration_continues_from_its_checkpoint(tmp_path, mnist_dir, base,
                                                                   small_config):
    from vae_core.data import load_mnist
    from vae_core.train import train

    cfg = base.replace(epochs=2, latent_dim=2, beta=1.0)
    data = load_mnist(cfg, mnist_dir)
    out = tmp_path / "s"
    ckpt = out / "configs" / config_name(cfg) / "checkpoint.pt"
    train(cfg.replace(epochs=1), data, checkpoint=ckpt, progress=False)  # "killed" after epoch 1
    logs = []
    run_sweep(out, cfg, latent_dims=[2], betas=[1.0], data_dir=mnist_dir, log=logs.append, **FAST)
    assert any("continuing from its checkpoint" in m for m in logs)
    resumed = pd.read_csv(out / "configs" / "z2_beta1" / "tables" / "loss.csv")
    straight = pd.DataFrame(train(cfg, data, progress=False).history)
    assert len(resumed) == 2
    cols = ["train_loss", "test_loss"]
    assert (resumed[cols].to_numpy() == straight[cols].to_numpy()).all()  # bit-identical


def test_sweep_refuses_other_settings_in_the_same_folder(tmp_path, mnist_dir, base):
    out = tmp_path / "s"
    (out).mkdir()
    spec = {"latent_dims": [2], "betas": [1.0], "iw_k": 10, "iw_images": 40,
            "shared": {**{k: getattr(base, k) for k in ("hidden_dim", "batch_size",
                                                         "learning_rate", "seed",
                                                         "train_fraction", "eval_set",
                                                         "train_limit", "eval_limit",
                                                         "binarize")}, "epochs": 99}}
    (out / "sweep.json").write_text(json.dumps(spec))
    with pytest.raises(RunDirError, match="epochs: folder 99, now 1"):
        run_sweep(out, base, latent_dims=[2], betas=[1.0], data_dir=mnist_dir, **FAST)


def test_cli_sweep_user_errors(tmp_path, capsys):
    assert main(["sweep", "--latent-dim", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--latent-dims" in capsys.readouterr().err
    assert main(["sweep", "--iw-k", "0", "--out", str(tmp_path / "x")]) == 2
    assert main(["sweep", "--betas", "-1", "--out", str(tmp_path / "y")]) == 2
    assert "beta" in capsys.readouterr().err


def _table(recon, roughness=None, recon_mean=None):
    rows = []
    for (z, b), r in recon.items():
        rows.append({"config": f"z{z}_beta{b:g}", "latent_dim": z, "beta": b, "recon": r,
                     "kl": 1.0, "neg_elbo": r + 1.0,
                     "recon_mean": (recon_mean or recon)[(z, b)],
                     "roughness": (roughness or {})[(z, b)] if roughness else 1.5,
                     "knn_vae": 0.9, "knn_pca": 0.5})
    return pd.DataFrame(rows)


def test_claim_verdicts_on_known_tables():
    good = {(z, b): 200 - 10 * z + 5 * b for z in (2, 5) for b in (0.5, 1.0, 4.0)}
    smooth = {(z, b): 3.0 - 0.2 * b for z in (2, 5) for b in (0.5, 1.0, 4.0)}
    v = {c["id"]: c["verdict"] for c in judge_claims(_table(good, smooth))["claims"]}
    assert v == {"latent_size": "supported", "beta_reconstruction": "supported",
                 "beta_smoothness": "supported"}
    bad = {(z, b): 100 + 10 * z - 5 * b for z in (2, 5) for b in (0.5, 1.0, 4.0)}
    rough = {(z, b): 1.0 + 0.2 * b for z in (2, 5) for b in (0.5, 1.0, 4.0)}
    res = judge_claims(_table(bad, rough))
    v = {c["id"]: c["verdict"] for c in res["claims"]}
    assert v == {"latent_size": "not supported", "beta_reconstruction": "not supported",
                 "beta_smoothness": "not supported"}
    assert [t["met"] for t in res["targets"]] == [True, True, True, True]  # z=2 ≤152; kNN wins
