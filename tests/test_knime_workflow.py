"""Runs the committed KNIME workflows without KNIME, through KNIME 5.5.3's real Python side.

The test reads only the generated files (workflow.knime, settings.xml), with its own parser and
its own decoding of KNIME's escaping, checks that every embedded script is byte-identical to a
file in nodes/, then executes every node in topological order, each Python node in a fresh
Python process (tests/knime_double/knime_runner.py: KNIME's own launcher, knio and pandas <->
Arrow conversion; PYTHONPATH replaced, so vae_core comes from the workflow's data area only),
with workflow variables overridden the way ``-workflow.variable=`` does. Every output port is
checked, and so are the columns the Scatter Plot and Line Plot nodes use.

Helpers: ``_workflow_run.py``. `make test` runs the test_knime_workflow*.py files in .venv
(vae_core installed: the bundled copy must still win) and in .venv-knime (KNIME 5.5's pins,
vae_core not installed: the bundled copy is all there is).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
from _workflow_run import (
    PNG,
    PYTHON_SCRIPT,
    REPO,
    SMALL,
    VIEWS,
    Run,
    as_frame,
    copy_workflow,
    execute,
    files_in,
    load_workflow,
    node_script,
)
from knime_runner import NodeExecutionError, Table, run_script_isolated


# ----------------------------------------------------------------------------- main + apply
@pytest.fixture(scope="module")
def workspace(mnist_dir, tmp_path_factory) -> Path:
    """A KNIME workspace with the main and the apply workflow imported side by side."""
    ws = tmp_path_factory.mktemp("workspace")
    for name in ("VAE_MNIST", "VAE_MNIST_apply"):
        copy_workflow(name, ws)
    return ws


@pytest.fixture(scope="module")
def main_run(workspace, mnist_dir) -> Run:
    folder = workspace / "VAE_MNIST"
    before = files_in(folder)
    run = execute(folder, [*SMALL, f"-workflow.variable=data_dir,{mnist_dir},String"],
                  workspace)
    # the only file a node writes is the model Save Model puts in the data area
    assert files_in(folder) - before == {"data/vae_mnist_model.pt"}
    return run


def test_every_python_node_ran_and_filled_its_ports(main_run):
    for nid, node in main_run.nodes.items():
        if node.factory == PYTHON_SCRIPT:
            outs = main_run.outputs[nid]
            assert len(outs) == len(node.outputs) > 0
            for kind, out in zip(node.outputs, outs, strict=True):
                if kind == "table":
                    assert isinstance(out, Table) and out.num_rows > 0
                elif kind == "image":
                    assert out.startswith(PNG) and len(out) > 1000
                else:
                    assert pickle.loads(out)["format"] == "vae-mnist-model"
    assert set(main_run.checked_views) == {n for n, node in main_run.nodes.items()
                                           if node.factory in VIEWS}


def test_view_nodes_are_configured_on_real_columns(main_run):
    views = {main_run.nodes[n].label: cols for n, cols in main_run.checked_views.items()}
    assert views["Latent space"] == ["z1", "z2", "digit"]
    assert views["Latent explorer"] == ["plot_x", "plot_y", "digit"]
    assert views["Loss per epoch"] == ["epoch", "train_loss", "test_loss"]
    assert {k: v[0] for k, v in views.items() if k not in (
        "Latent space", "Latent explorer", "Loss per epoch")} == {
        "Latent explorer digits": "image", "Originals and reconstructions": "image",
        "Generated digits": "image", "Sample images": "image"}


def test_image_columns_arrive_as_png_cells_with_the_digits(main_run):
    """Through KNIME's conversion a PIL column becomes PNG image cells; read back they are
    the digits of the table's own pixels."""
    from vae_core.outputs.tables import PIXEL_COLUMNS

    for label, port in (("Reconstruct", 0), ("Generate", 0), ("Load MNIST", 2),
                        ("Encode", 1), ("Decode", 0)):
        df = as_frame(main_run.out(label, port))
        cells = list(df["image"])
        assert all(isinstance(c, PIL.Image.Image) and c.size == (56, 56) for c in cells), label
        if PIXEL_COLUMNS[0] not in df.columns:  # the explorer: compare with the held-out table
            held = as_frame(main_run.out("Load MNIST", 1)).set_index("image_id")
            pixels = held.loc[df["image_id"], PIXEL_COLUMNS].to_numpy(np.float64)
        else:
            pixels = df[PIXEL_COLUMNS].to_numpy(np.float64)
        if pixels.max() <= 1:  # float pixels in [0, 1]; grey-level tables are 0-255 already
            pixels = np.rint(pixels * 255)
        got = np.stack([np.asarray(c.convert("L"))[::2, ::2].ravel() for c in cells])
        np.testing.assert_array_equal(got, pixels, err_msg=label)


def test_latent_explorer_titles_say_what_is_plotted(main_run):
    pushed = main_run.pushed[main_run.node("Encode")]
    assert pushed == {"latent_x_title": "z1 (μ)", "latent_y_title": "z2 (μ)"}  # latent_dim 2
    explorer = as_frame(main_run.out("Encode", 1))
    latent = as_frame(main_run.out("Encode"))
    assert len(explorer) == len(latent) == 300  # at most 1000 rows; here all of them
    np.testing.assert_array_equal(explorer[["plot_x", "plot_y"]].to_numpy(),
                                  latent[["z1", "z2"]].to_numpy())


def test_output_contents(main_run):
    from vae_core.outputs.tables import LOSS_COLUMNS, PIXEL_COLUMNS

    train, heldout, samples = (as_frame(main_run.out("Load MNIST", i)) for i in range(3))
    assert len(train) == 600 and len(heldout) == 300 and samples.shape == (64, 4 + 784 + 1)
    assert (train[PIXEL_COLUMNS].dtypes == "int32").all()  # grey levels: KNIME integer columns
    assert train[PIXEL_COLUMNS].stack().between(0, 255).all()
    assert list(heldout.index[:2]) == ["Row0", "Row1"]
    loss = as_frame(main_run.out("Train VAE"))
    assert list(loss.columns[:len(LOSS_COLUMNS)]) == LOSS_COLUMNS
    assert loss["epoch"].tolist() == [1, 2]
    # the settings ride in every row, so tables a Loop End collects stay self-describing
    assert loss[["latent_dim", "beta", "epochs", "batch_size", "seed", "train_images",
                 "heldout_images"]].drop_duplicates().values.tolist() == [[2, 1.0, 2, 100, 5,
                                                                           600, 300]]
    record = pickle.loads(main_run.out("Train VAE", 2))
    cfg = record["config"]
    assert (cfg["epochs"], cfg["train_limit"], cfg["eval_limit"], cfg["seed"]) == (2, 600, 300, 5)
    latent = as_frame(main_run.out("Encode"))
    assert len(latent) == 300 and latent["digit"].tolist() == latent["label"].astype(str).tolist()
    recon = as_frame(main_run.out("Reconstruct"))
    assert recon["kind"].tolist() == ["original", "reconstruction"] * 10
    generated = as_frame(main_run.out("Generate"))
    assert len(generated) == 64 and generated[PIXEL_COLUMNS].stack().between(0, 1).all()
    decoded = as_frame(main_run.out("Decode"))  # the explorer's rows: here all 300
    assert len(decoded) == 300
    np.testing.assert_allclose(decoded[["z1", "z2"]].to_numpy(), latent[["z1", "z2"]].to_numpy())
    saved = as_frame(main_run.out("Save Model"))
    assert saved["status"].tolist() == ["written"]
    assert saved["model_path"].iloc[0] == str(main_run.folder / "data" / "vae_mnist_model.pt")


def test_train_vae_pushes_its_results_as_plain_float_flow_variables(main_run):
    from vae_core.nodes.steps import RESULT_VARIABLES

    pushed = main_run.pushed[main_run.node("Train VAE")]
    assert set(pushed) == set(RESULT_VARIABLES)
    assert all(type(v) is float for v in pushed.values())
    loss = as_frame(main_run.out("Train VAE"))
    assert pushed["vae_heldout_loss"] == loss["test_loss"].iloc[-1]
    assert pushed["vae_train_kl"] == loss["train_kl"].iloc[-1]


def test_workflow_reproduces_the_cli_pipeline(main_run, mnist_dir):
    """Trained on the tables KNIME passed, the model is the one `vae-mnist run` trains, and
    the nodes give exactly the tables the CLI computes with it."""
    from vae_core.config import TrainConfig
    from vae_core.data.splits import load_mnist
    from vae_core.outputs.results import lab_results
    from vae_core.training.loop import train
    from vae_core.training.model_file import TrainedVAE

    trained = TrainedVAE.from_record(pickle.loads(main_run.out("Train VAE", 2)))
    config = TrainConfig.from_dict(trained.record["config"])
    data = load_mnist(config, mnist_dir)
    direct = train(config, data, progress=False)
    for name, tensor in direct.model.state_dict().items():
        assert torch.equal(tensor, trained.record["model"][name]), name
    lab = lab_results(trained.model(), config, data, trained.history)
    pairs = {"Load MNIST": ("samples", 2), "Encode": ("latent", 0),
             "Reconstruct": ("reconstructions", 0), "Generate": ("generated", 0)}
    for label, (field_name, port) in pairs.items():
        got = as_frame(main_run.out(label, port)).reset_index(drop=True)
        got = got.drop(columns=["image"], errors="ignore")  # image cells: KNIME tables only
        pd.testing.assert_frame_equal(got, getattr(lab, field_name), check_dtype=True)
    loss = as_frame(main_run.out("Train VAE")).reset_index(drop=True)[lab.loss.columns]
    pd.testing.assert_frame_equal(loss.drop(columns="seconds"), lab.loss.drop(columns="seconds"))


@pytest.fixture(scope="module")
def apply_run(main_run, workspace) -> Run:
    """The apply workflow with its defaults, no edits: it finds the model the main saved."""
    folder = workspace / "VAE_MNIST_apply"
    before = files_in(folder)
    run = execute(folder, [], workspace)
    assert files_in(folder) == before
    return run


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
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
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
        main_run, workspace, mnist_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "vae_core.cli", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return proc

    run_dir = tmp_path / "cli_run"
    cli("run", "--run-dir", run_dir, "--epochs", 1, "--train-limit", 300, "--eval-limit", 100,
        "--latent-dim", 3, "--device", "cpu", "--data-dir", mnist_dir, "--quiet")
    load = next(n for n in load_workflow(workspace / "VAE_MNIST_apply")[1].values()
                if n.label == "Load Model")
    for target in (run_dir, run_dir / "checkpoint.pt"):
        res = run_script_isolated(node_script(load), workflow_dir=workspace / "VAE_MNIST_apply",
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


def test_save_model_refuses_to_replace_a_different_model_in_the_workflow(main_run, tmp_path):
    folder = copy_workflow("VAE_MNIST", tmp_path)
    shutil.copy(main_run.folder / "data" / "vae_mnist_model.pt", folder / "data")
    save = main_run.nodes[main_run.node("Save Model")]
    record = pickle.loads(main_run.out("Train VAE", 2))
    other = {**record, "model": {k: v + 1 for k, v in record["model"].items()}}
    kept = (folder / "data" / "vae_mnist_model.pt").read_bytes()
    with pytest.raises(NodeExecutionError, match=r"^Execute failed: CheckpointError: .* already "
                       "holds a different model .*overwrite_model to 1"):
        run_script_isolated(node_script(save), workflow_dir=folder,
                            flow_variables=main_run.variables,
                            input_objects=[pickle.dumps(other)], n_out_tables=1)
    assert (folder / "data" / "vae_mnist_model.pt").read_bytes() == kept
    res = run_script_isolated(node_script(save), workflow_dir=folder,
                              flow_variables={**main_run.variables, "overwrite_model": 1},
                              input_objects=[pickle.dumps(other)], n_out_tables=1)
    assert as_frame(res.tables[0])["status"].tolist() == ["replaced"]


def test_wrong_inputs_fail_the_node_with_one_clear_message(main_run):
    nodes = {n.label: n for n in main_run.nodes.values() if "nodeAnnotation" in n.settings}
    model = main_run.out("Train VAE", 2)
    latent = main_run.out("Encode")
    small = Table.from_pandas(as_frame(latent).drop(columns="z2"))
    cases = [
        ("Generate", [pickle.dumps({"a": 1})], [],
         "VAEError: The model input must be the model from a Train VAE or Load Model node"),
        ("Decode", [model], [small], "TableError: The model has latent size 2"),
        ("Encode", [model], [latent], "TableError: The input table lacks 784 of the 784 pixel"),
        ("Train VAE", [], [latent, latent], "TableError: The training table (input 1) lacks"),
    ]
    for label, objects, tables, message in cases:
        node = nodes[label]
        with pytest.raises(NodeExecutionError) as err:
            run_script_isolated(node_script(node), workflow_dir=main_run.folder,
                                flow_variables=main_run.variables, input_objects=objects,
                                input_tables=tables, n_out_tables=node.outputs.count("table"),
                                n_out_images=node.outputs.count("image"),
                                n_out_objects=node.outputs.count("object"))
        assert str(err.value).startswith(f"Execute failed: {message}"), str(err.value)
        assert "Traceback" not in str(err.value)
