"""Runs the committed KNIME workflows without KNIME, through KNIME 5.5.3's real Python side.

The test reads only the generated files (workflow.knime, settings.xml), with its own parser and
its own decoding of KNIME's escaping, checks that every embedded script is byte-identical to a
file in nodes/, then executes every node in topological order, each Python node in a fresh
Python process (tests/knime_double/knime_runner.py: KNIME's own launcher, knio and pandas <->
Arrow conversion; PYTHONPATH replaced, so vae_core comes from the workflow's data area only),
with the Train VAE component's dialog set the way the batch wrapper's ``-option``
sets it (the Configuration nodes push its values) and workflow variables the way
``-workflow.variable=`` does. Every output port is
checked, and so are the columns the Scatter Plot and Line Plot nodes use.

Helpers: ``_workflow_run.py``; the runs: conftest's ``main_run`` / ``apply_run`` (one per session,
shared with ``test_knime_workflow_apply.py``). `make test` runs the test_knime_workflow*.py
files in .venv (vae_core installed: the bundled copy must still win) and in .venv-knime
(KNIME 5.5's pins, vae_core not installed: the bundled copy is all there is).
"""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
from _workflow_run import (
    DIALOG_RUN,
    PNG,
    PYTHON_SCRIPT,
    VIEWS,
    as_frame,
    copy_workflow,
    node_script,
)
from knime_runner import NodeExecutionError, Table, run_script_isolated


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
                 "heldout_images"]].drop_duplicates().values.tolist() == [[2, 0.5, 2, 100, 5,
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


def test_the_train_vae_dialog_values_are_what_trained(main_run):
    """Non-default dialog values, set as the batch wrapper sets them, reach the Train VAE node
    through the Configuration nodes: the loss table's settings columns and the model show
    exactly them (the rest: the table's defaults)."""
    from vae_core.config import TrainConfig
    from vae_core.nodes.steps import LOSS_TABLE_SETTINGS

    wanted = TrainConfig.from_dict({k: v for k, v in DIALOG_RUN.items() if k != "device"})
    assert wanted.hidden_dim == 64 and wanted.lr_schedule == "cosine"  # not the defaults
    loss = as_frame(main_run.out("Train VAE"))
    for name in LOSS_TABLE_SETTINGS:
        assert loss[name].tolist() == [getattr(wanted, name)] * 2, name
    record = pickle.loads(main_run.out("Train VAE", 2))
    assert record["config"] == {**wanted.to_dict(), "device": "cpu"}


def test_the_component_pushes_its_settings_and_the_results(main_run):
    """What leaves the component: every dialog field (the Configuration nodes' variables, a
    selection also with its index) and Train VAE's results; the nodes after it see them."""
    from vae_core.nodes.steps import RESULT_VARIABLES

    pushed = main_run.pushed[main_run.component("Train VAE")]
    assert {k: str(pushed[k]) for k in DIALOG_RUN} == {
        **DIALOG_RUN, "beta": "0.5", "learning_rate": "0.002"}
    assert pushed["binarize"] is False and pushed["lr_schedule (index)"] == 1
    assert set(RESULT_VARIABLES) <= set(pushed)
    assert main_run.pushed[main_run.node("Train VAE")].keys() == RESULT_VARIABLES.keys()
    save = as_frame(main_run.out("Save Model"))
    assert save["status"].tolist() == ["written"]
