"""The apply workflow, run on the model the main workflow saved (conftest's ``apply_run`` and
``main_run``: one run each per session), and the model's way between the workflows and the
command line. See ``test_knime_workflow.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from _workflow_run import (
    PNG,
    REPO,
    as_frame,
    load_workflow,
    node_script,
)
from knime_runner import NodeExecutionError, Table, run_script_isolated


def test_apply_workflow_uses_the_model_the_main_workflow_saved(main_run, apply_run):
    from vae_core.training.model_file import TrainedVAE

    info = as_frame(apply_run.out("Load Model"))
    assert info["status"].tolist() == ["loaded"]
    assert Path(info["model_path"].iloc[0]) == main_run.folder / "data" / "vae_mnist_model.pt"
    trained = TrainedVAE.from_record(pickle.loads(main_run.out("Train VAE", 2)))
    loaded = TrainedVAE.from_record(pickle.loads(apply_run.out("Load Model", 1)))
    assert loaded.same_model(trained) and loaded.history == trained.history
    heldout = as_frame(apply_run.out("Load MNIST", 1))
    assert len(heldout) == 10000 and set(heldout["source"]) == {"test"}  # eval_set=test
    latent = as_frame(apply_run.out("Encode"))
    assert len(latent) == 10000
    images = torch.from_numpy(heldout.filter(like="pixel_").to_numpy("int32")).float() / 255
    with torch.no_grad():
        mu, _ = trained.model().encode(images)
    np.testing.assert_allclose(latent[["z1", "z2"]].to_numpy(), mu.numpy(), rtol=1e-5,
                               atol=1e-6)
    assert len(as_frame(apply_run.out("Decode"))) == 1000  # the latent explorer's 1000 images
    assert len(as_frame(apply_run.out("Generate"))) == 64
    views = {apply_run.nodes[n].label: c for n, c in apply_run.checked_views.items()}
    assert views["Latent space"] == ["z1", "z2", "digit"]
    assert views["Latent explorer"] == ["plot_x", "plot_y", "digit"]


def test_load_model_says_which_model_it_loaded(main_run, apply_run):
    """Where the file lies, when it was saved and the settings it was trained with reach the
    flow variables and the table, so a stale model is visible downstream."""
    saved = main_run.folder / "data" / "vae_mnist_model.pt"
    when = datetime.fromtimestamp(saved.stat().st_mtime, tz=UTC)
    pushed = apply_run.pushed[apply_run.node("Load Model")]
    assert pushed["model_file"] == str(saved.resolve())
    assert pushed["model_saved_at"] == when.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert pushed["model_workflow"] == "VAE_MNIST"
    assert (pushed["model_latent_dim"], pushed["model_epochs"], pushed["model_seed"]) == (2, 2, 5)
    assert pushed["model_binarize"] == 0 and isinstance(pushed["model_beta"], float)
    info = as_frame(apply_run.out("Load Model"))
    assert info[["saved_at", "workflow"]].iloc[0].tolist() == [pushed["model_saved_at"],
                                                               "VAE_MNIST"]


def test_apply_workflow_scores_the_test_images_as_the_cli_does(main_run, apply_run, mnist_dir,
                                                               tmp_path):
    from vae_core.outputs.tables import read_table

    scores = as_frame(apply_run.out("Score"))
    assert len(scores) == 10000 and set(scores["source"]) == {"test"}
    assert scores["percentile"].between(0.1, 99.9).all()
    pushed = apply_run.pushed[apply_run.node("Score")]
    assert pushed["unusual_count"] == int(scores["is_unusual"].sum()) > 0
    assert pushed["unusual_share"] == pushed["unusual_count"] / 10000
    unusual = as_frame(apply_run.out("Score", 1))
    assert len(unusual) == 64 and unusual["neg_elbo"].tolist() == sorted(
        scores["neg_elbo"], reverse=True)[:64]
    for column in ("input", "reconstruction", "error"):
        assert all(isinstance(c, PIL.Image.Image) and c.size == (56, 56)
                   for c in unusual[column]), column
    assert apply_run.out("Score", 2).startswith(PNG)
    views = {apply_run.nodes[n].label: c for n, c in apply_run.checked_views.items()}
    assert views["Scores"] == ["recon", "kl", "digit"]
    assert views["Most unusual digits"][:3] == ["input", "reconstruction", "error"]
    # the same numbers from the command line, for the model the main workflow saved
    out = tmp_path / "scores.csv"
    proc = subprocess.run([sys.executable, "-m", "vae_core.cli", "score",
                           str(main_run.folder / "data" / "vae_mnist_model.pt"), "--data-dir",
                           str(mnist_dir), "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    # (the nodes' environment: equal bits need the same number of CPU threads)
    assert proc.returncode == 0, proc.stderr
    cli = read_table(out)
    for column in ("image_id", "neg_elbo", "recon", "kl", "percentile", "is_unusual"):
        np.testing.assert_array_equal(cli[column].to_numpy(), scores[column].to_numpy())


def test_score_fails_with_one_clear_message_on_bad_input(main_run, apply_run):
    score = apply_run.nodes[apply_run.node("Score")]
    record = pickle.loads(main_run.out("Train VAE", 2))
    old = {k: v for k, v in record.items() if k != "reference_scores"}
    images = apply_run.out("Load MNIST", 1)
    no_pixels = Table.from_pandas(as_frame(images).drop(columns="pixel_5").head(20))
    cases = [({}, old, images, "VAEError: The model has no reference scores"),
             ({"unusual_quantile": 1.5}, record, images,
              "ConfigError: Invalid unusual_quantile=1.5: it must be a number strictly between"),
             ({}, record, no_pixels, "TableError: The input table lacks 1 of the 784 pixel")]
    for variables, model, table, message in cases:
        with pytest.raises(NodeExecutionError) as err:
            run_script_isolated(node_script(score), workflow_dir=apply_run.folder,
                                flow_variables={**apply_run.variables, **variables},
                                input_objects=[pickle.dumps(model)], input_tables=[table],
                                n_out_tables=2, n_out_images=1)
        assert str(err.value).startswith(f"Execute failed: {message}"), str(err.value)
        assert "Traceback" not in str(err.value)


def test_a_cli_run_feeds_the_apply_workflow_and_a_workflow_model_feeds_the_cli(
        main_run, knime_workspace, mnist_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "vae_core.cli", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return proc

    run_dir = tmp_path / "cli_run"
    cli("run", "--run-dir", run_dir, "--epochs", 1, "--train-limit", 300, "--eval-limit", 100,
        "--latent-dim", 3, "--device", "cpu", "--data-dir", mnist_dir, "--quiet")
    load = next(n for n in load_workflow(knime_workspace / "VAE_MNIST_apply")[1].values()
                if n.label == "Load Model")
    for target in (run_dir, run_dir / "checkpoint.pt"):
        res = run_script_isolated(node_script(load), workflow_dir=knime_workspace / "VAE_MNIST_apply",
                                  flow_variables={"model_path": str(target)},
                                  n_out_tables=1, n_out_objects=1)
        record = pickle.loads(res.objects[0])
        assert record["config"]["latent_dim"] == 3 and len(record["history"]) == 1
    # and the other way: the workflow's saved model becomes a CLI run folder
    saved = main_run.folder / "data" / "vae_mnist_model.pt"
    imported = tmp_path / "from_knime"
    cli("import-model", saved, "--run-dir", imported, "--data-dir", mnist_dir, "--quiet")
    cli("evaluate", imported, "--iw-k", 5, "--iw-images", 20, "--data-dir", mnist_dir, "--quiet")
    metrics = json.loads((imported / "metrics.json").read_text())
    assert metrics["latent_dim"] == 2
    cli("report", imported, "--no-evaluate")
    assert "<html" in (imported / "report.html").read_text().lower()
    resume = subprocess.run([sys.executable, "-m", "vae_core.cli", "run", "--run-dir",
                             str(imported), "--resume", "--data-dir", str(mnist_dir)],
                            capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert resume.returncode == 2 and "holds no optimizer state, so it cannot be resumed" in \
        resume.stderr and "Traceback" not in resume.stderr
