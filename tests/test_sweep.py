"""The sweep: outputs, resumption after an interruption, settings checks, claim verdicts."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _small_sweep import SMALL_SWEEP, small_sweep

from vae_core.cli import main
from vae_core.config import SWEEP_SHARED, TrainConfig
from vae_core.errors import RunDirError
from vae_core.experiments.claims import judge_claims
from vae_core.experiments.sweep import EXPERIMENT_COLUMNS, config_name, run_sweep
from vae_core.outputs import evaluation_figures, lab_figures
from vae_core.outputs.tables import read_table

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
    dims = pd.read_csv(finished_sweep / "kl_per_dim.csv")
    assert dims.groupby("config", sort=False)["dim"].apply(list).to_dict() == {
        "z2_beta1": [1, 2], "z2_beta2": [1, 2], "z3_beta1": [1, 2, 3], "z3_beta2": [1, 2, 3]}
    # active units = the dimensions flagged active in the per-dimension table
    active = dims.groupby("config", sort=False)["active"].sum()
    assert exp.set_index("config")["active_units"].to_dict() == active.to_dict()
    # the claims are the verdicts on this very table, in the lab's order
    claims = json.loads((finished_sweep / "claims.json").read_text())
    assert claims == json.loads(json.dumps(judge_claims(exp)))
    assert [c["id"] for c in claims["claims"]] == ["latent_size", "beta_reconstruction",
                                                  "beta_smoothness"]
    md = (finished_sweep / "claims.md").read_text()
    for c in claims["claims"]:
        assert f"## {c['claim']}\n\n**Verdict: {c['verdict']}.**" in md
    # each sweep figure is the picture of the table saved beside it
    hists = pd.read_csv(finished_sweep / "histories.csv")
    redrawn = {"tradeoff": evaluation_figures.tradeoff_figure(exp),
               "metrics_vs_latent": evaluation_figures.metrics_vs_latent_figure(exp),
               "kl_per_dim": evaluation_figures.kl_per_dim_figure(dims),
               "loss_curves": evaluation_figures.loss_curves_figure(hists),
               "smoothness": evaluation_figures.smoothness_figure(exp)}
    for name, fig in redrawn.items():
        assert (finished_sweep / "figures" / f"{name}.png").read_bytes() == \
            lab_figures.figure_png(fig), name


def test_every_configuration_folder_is_a_run_folder_of_its_model(finished_sweep, mnist_dir):
    """Each configuration's metrics are the metrics of the model in its checkpoint, from the
    run's named seed streams, and its neg-ELBO is the last row of its own loss table."""
    from vae_core.data.splits import load_mnist
    from vae_core.evaluation import estimators as E
    from vae_core.seeds import derive_seed
    from vae_core.training.checkpoint import load_model

    exp = read_table(finished_sweep / "experiments.csv").set_index("config")
    data = None
    for name in exp.index:
        cfg_dir = finished_sweep / "configs" / name
        m = json.loads((cfg_dir / "metrics.json").read_text())
        assert json.loads((cfg_dir / "config.json").read_text()) == m["config"]
        model, config = load_model(cfg_dir / "checkpoint.pt")
        assert config.to_dict() == m["config"] and name == config_name(config)
        last = read_table(cfg_dir / "tables" / "loss.csv").iloc[-1]
        assert m["neg_elbo"] == m["recon"] + m["kl"] == exp.loc[name, "neg_elbo"]
        assert m["neg_elbo"] == last["test_recon"] + last["test_kl"]
        probe = pd.read_csv(cfg_dir / "tables" / "probe.csv").set_index("features")
        assert (m["knn_vae"], m["knn_pca"]) == (probe.loc["vae_mu", "knn_accuracy"],
                                                probe.loc["pca", "knn_accuracy"])
        if data is None:  # one split for the whole grid
            data = load_mnist(config, mnist_dir)
        x, sub = data.eval.images, data.eval.images[:40]
        seed = config.seed
        assert m["neg_elbo"] == E.heldout_loss(model, x, seed)["neg_elbo"]
        assert m["neg_elbo_iw_subset"] == E.heldout_loss(model, sub, seed,
                                                         stream="iw_subset")["neg_elbo"]
        assert m["iw_bound"] == E.importance_sampled_bound(
            model, sub, k=10, seed=derive_seed(seed, "iw"))["value"]
        assert m["roughness"] == E.interpolation_roughness(
            model, x, seed=derive_seed(seed, "roughness"))["roughness"]
        assert m["decoder_gain"] == E.decoder_gain(model, x, seed=derive_seed(seed, "decoder_gain"))
        assert m["active_units"] == E.active_units(model, x)
    lab = finished_sweep / "configs" / "z2_beta1"
    summary = json.loads((lab / "summary.json").read_text())
    assert {f"figures/{p.name}" for p in (lab / "figures").glob("*.png")} == \
        {*summary["figures"].values(), "figures/interpolation.png"}
    assert "figures/manifold.png" in summary["figures"].values()  # z = 2: the lab's manifold


def test_folder_written_before_a_setting_existed_still_counts_as_finished(finished_sweep,
                                                                         tmp_path):
    """metrics.json of an older version lacks later settings: they read as their defaults."""
    import shutil

    folder = tmp_path / "old"
    shutil.copytree(finished_sweep, folder)
    for metrics in folder.glob("configs/*/metrics.json"):
        m = json.loads(metrics.read_text())
        del m["config"]["lr_schedule"], m["config"]["binarize"]
        metrics.write_text(json.dumps(m))
    res = run_sweep(folder, TrainConfig(**SMALL_SWEEP["base"]), log=lambda m: None,
                    figures=False, **{k: v for k, v in SMALL_SWEEP.items() if k != "base"})
    assert res.trained == [] and res.reused == ["z2_beta1", "z2_beta2", "z3_beta1", "z3_beta2"]


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
    from vae_core.data.splits import load_mnist
    from vae_core.training.loop import train

    cfg = base.replace(epochs=2, latent_dim=2, beta=1.0)
    data = load_mnist(cfg, mnist_dir)
    out = tmp_path / "s"
    ckpt = out / "configs" / config_name(cfg) / "checkpoint.pt"
    train(cfg.replace(epochs=1), data, checkpoint=ckpt, progress=False)  # "killed" after epoch 1
    logs = []
    run_sweep(out, cfg, latent_dims=[2], betas=[1.0], data_dir=mnist_dir, log=logs.append, **FAST)
    assert any("continuing from its checkpoint" in m for m in logs)
    resumed = read_table(out / "configs" / "z2_beta1" / "tables" / "loss.csv")
    straight = pd.DataFrame(train(cfg, data, progress=False).history)
    assert len(resumed) == 2
    cols = ["train_loss", "test_loss"]
    assert (resumed[cols].to_numpy() == straight[cols].to_numpy()).all()  # bit-identical


def test_sweep_folder_of_the_earlier_layout_resumes(tmp_path, mnist_dir, base):
    """Earlier versions trained each configuration in place (checkpoint.pt at the top of its
    folder, no .incomplete/) and wrote config.json, summary.json and metrics.json themselves.
    Such a folder, written here the way they wrote it, keeps its finished configuration as it is
    and continues its interrupted one to the uninterrupted result, as a run folder."""
    from vae_core.data.splits import load_mnist
    from vae_core.evaluation.run_metrics import evaluate_model, write_evaluation
    from vae_core.outputs.tables import loss_table, write_table
    from vae_core.training.loop import train
    from vae_core.training.rundir import STAGING, finished_checkpoint

    shared = base.replace(epochs=2)
    kept_cfg, cut_cfg = shared.replace(beta=1.0), shared.replace(beta=4.0)
    data = load_mnist(shared, mnist_dir)
    out = tmp_path / "s"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(
        {"latent_dims": [2], "betas": [1.0, 4.0], "iw_k": 10, "iw_images": 40,
         "shared": {k: getattr(shared, k) for k in SWEEP_SHARED}}, indent=2) + "\n")
    kept = out / "configs" / "z2_beta1"
    kept.mkdir(parents=True)
    (kept / "config.json").write_text(json.dumps(kept_cfg.to_dict(), indent=2) + "\n")
    res = train(kept_cfg, data, checkpoint=kept / "checkpoint.pt", progress=False)
    write_table(loss_table(res.history), kept / "tables" / "loss.csv")
    (kept / "summary.json").write_text(json.dumps(
        {"epochs": 2, "checkpoint": "checkpoint.pt", "tables": {"loss": "tables/loss.csv"},
         "figures": {}}, indent=2) + "\n")
    write_evaluation(evaluate_model(res.model, kept_cfg, data, iw_k=10, iw_images=40), kept,
                     extra={"config": kept_cfg.to_dict(),
                            "final_train_loss": res.history[-1]["train_loss"],
                            "train_seconds": 1.0})
    cut = out / "configs" / "z2_beta4"  # killed after its first epoch
    cut.mkdir()
    (cut / "config.json").write_text(json.dumps(cut_cfg.to_dict(), indent=2) + "\n")

    def stop(row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cut_cfg, data, checkpoint=cut / "checkpoint.pt", progress=False, on_epoch=stop)
    before = {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()}

    logs = []
    got = run_sweep(out, shared, latent_dims=[2], betas=[1.0, 4.0], data_dir=mnist_dir,
                    log=logs.append, **FAST)
    assert got.reused == ["z2_beta1"] and got.trained == ["z2_beta4"]
    assert {p.relative_to(kept): p.read_bytes() for p in kept.rglob("*") if p.is_file()} == before
    assert any("z2_beta4: continuing from its checkpoint" in m for m in logs)
    resumed = read_table(cut / "tables" / "loss.csv")
    straight = pd.DataFrame(train(cut_cfg, data, progress=False).history)
    cols = ["train_loss", "test_loss"]
    assert (resumed[cols].to_numpy() == straight[cols].to_numpy()).all()  # bit-identical
    assert finished_checkpoint(cut) is not None and not (cut / STAGING).exists()
    assert json.loads((cut / "config.json").read_text()) == cut_cfg.to_dict()
    assert "total_seconds" in json.loads((cut / "summary.json").read_text())  # run's summary
    assert got.experiments["config"].tolist() == ["z2_beta1", "z2_beta4"]
    assert got.experiments.set_index("config").loc["z2_beta1", "neg_elbo"] == \
        json.loads((kept / "metrics.json").read_text())["neg_elbo"]


def test_sweep_refuses_other_settings_in_the_same_folder(tmp_path, mnist_dir, base):
    out = tmp_path / "s"
    (out).mkdir()
    spec = {"latent_dims": [2], "betas": [1.0], "iw_k": 10, "iw_images": 40,
            "shared": {**{k: getattr(base, k) for k in SWEEP_SHARED}, "epochs": 99}}
    (out / "sweep.json").write_text(json.dumps(spec))
    with pytest.raises(RunDirError, match="epochs: 99 before, 1 now"):
        run_sweep(out, base, latent_dims=[2], betas=[1.0], data_dir=mnist_dir, **FAST)


def test_cli_sweep_user_errors(tmp_path, capsys):
    assert main(["sweep", "--latent-dim", "3", "--out", str(tmp_path / "x")]) == 2
    assert "--latent-dims" in capsys.readouterr().err
    assert main(["sweep", "--iw-k", "0", "--out", str(tmp_path / "x")]) == 2
    assert main(["sweep", "--betas", "-1", "--out", str(tmp_path / "y")]) == 2
    assert "beta" in capsys.readouterr().err


def _table(recon, roughness=None, recon_mean=None, knn_vae=0.9):
    rows = []
    for (z, b), r in recon.items():
        rows.append({"config": f"z{z}_beta{b:g}", "latent_dim": z, "beta": b, "recon": r,
                     "kl": 1.0, "neg_elbo": r + 1.0,
                     "recon_mean": (recon_mean or recon)[(z, b)],
                     "roughness": (roughness or {})[(z, b)] if roughness else 1.5,
                     "decoder_gain": 2.0, "knn_vae": knn_vae, "knn_pca": 0.5})
    return pd.DataFrame(rows)


GRID = [(z, b) for z in (2, 5) for b in (0.5, 1.0, 4.0)]


def test_claim_verdicts_on_known_tables():
    good = {(z, b): 200 - 10 * z + 5 * b for z, b in GRID}
    smooth = {(z, b): 3.0 - 0.2 * b for z, b in GRID}
    v = {c["id"]: c["verdict"] for c in judge_claims(_table(good, smooth))["claims"]}
    assert v == {"latent_size": "supported", "beta_reconstruction": "supported",
                 "beta_smoothness": "supported"}
    bad = {(z, b): 100 + 10 * z - 5 * b for z, b in GRID}
    rough = {(z, b): 1.0 + 0.2 * b for z, b in GRID}
    res = judge_claims(_table(bad, rough))
    v = {c["id"]: c["verdict"] for c in res["claims"]}
    assert v == {"latent_size": "not supported", "beta_reconstruction": "not supported",
                 "beta_smoothness": "not supported"}
    assert [t["met"] for t in res["targets"]] == [True, True, True, True]  # z=2 ≤152; kNN wins
    assert res["complete_grid"] is True


def test_partial_verdicts_on_known_tables():
    # latent size helps at β = 1 (the lab's) but not at β = 4; β hurts recon only at z = 2;
    # roughness falls with β only at z = 5
    recon = {(2, 0.5): 150, (2, 1.0): 151, (2, 4.0): 152,
             (5, 0.5): 121, (5, 1.0): 120, (5, 4.0): 160}
    rough = {(2, 0.5): 1.2, (2, 1.0): 1.3, (2, 4.0): 1.4,
             (5, 0.5): 1.4, (5, 1.0): 1.3, (5, 4.0): 1.2}
    res = judge_claims(_table(recon, rough, knn_vae=0.4))
    by = {c["id"]: c for c in res["claims"]}
    assert by["latent_size"]["verdict"] == "supported at β = 1"
    assert by["latent_size"]["numbers"]["strictly_decreasing_by_beta"] == {
        "0.5": True, "1": True, "4": False}
    assert by["beta_reconstruction"]["verdict"] == "partly supported"
    assert by["beta_reconstruction"]["numbers"]["strictly_increasing_in_beta"] == {
        "2": True, "5": False}
    assert by["beta_smoothness"]["verdict"] == "partly supported"
    assert "roughness does not fall from β = 0.5 to β = 4 at z = 2 (1.200 → 1.400)" in \
        by["beta_smoothness"]["note"]
    assert [t["met"] for t in res["targets"]] == [True, False, False, False]  # kNN 0.4 < PCA


def test_verdicts_of_a_single_setting_and_an_incomplete_grid():
    one = judge_claims(_table({(2, 1.0): 150.0}))
    assert [c["verdict"] for c in one["claims"]] == ["not tested"] * 3
    assert one["targets"][0] == {"target": "z = 2, β = 1: held-out neg-ELBO ≤ 152",
                                 "value": 151.0, "met": True}
    holey = _table({(z, b): 200 - 10 * z + 5 * b for z, b in GRID if (z, b) != (5, 4.0)})
    assert judge_claims(holey)["complete_grid"] is False
    assert judge_claims(pd.DataFrame(columns=EXPERIMENT_COLUMNS)) == {"claims": [],
                                                                     "targets": []}
