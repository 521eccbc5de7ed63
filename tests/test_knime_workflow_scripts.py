"""The committed workflows' embedded scripts and how their nodes fail without what they need
(the bundled vae_core, a valid workflow variable, a saved model). Helpers: ``_workflow_run.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _workflow_run import (
    NAMES,
    PYTHON_SCRIPT,
    PYTHON_SOURCE,
    REPO,
    WORKFLOWS,
    all_nodes,
    apply_batch_overrides,
    copy_workflow,
    execute,
    load_workflow,
    node_script,
    workflow_variables,
)
from knime_files import parse
from knime_legacy import run_legacy_source_isolated
from knime_runner import NodeExecutionError, run_script_isolated


# ----------------------------------------------------------------------------- static checks
def test_embedded_scripts_are_the_node_files_behind_the_bundle_guard():
    """Every script in the committed workflows is a nodes/*.py file with the bundle guard put
    just before its first vae_core import, and every node file is used."""
    files = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "nodes").glob("*.py")}
    used = set()
    for name in NAMES:
        for node in all_nodes(WORKFLOWS / name):  # inside components too
            if node.factory not in (PYTHON_SCRIPT, PYTHON_SOURCE):
                continue
            script = node_script(node)
            guard = script[script.index("import os\n"):script.index("sys.path.insert(0, DATA_AREA)\n")]
            guard += "sys.path.insert(0, DATA_AREA)\n"
            matches = [f for f, text in files.items() if text == script.replace(guard, "", 1)]
            assert len(matches) == 1, f"{name} node {node.id}: script matches {matches}"
            used.update(matches)
            area = ('os.path.join(os.getcwd(), "data")' if node.factory == PYTHON_SOURCE
                    else "knio.get_workflow_data_area_dir()")
            assert guard.splitlines()[3].startswith(f"DATA_AREA = {area}  #"), guard
            assert NO_BUNDLE in guard, guard
            after = script[script.index(guard) + len(guard):]
            assert after.startswith("from vae_core.nodes."), f"{name} node {node.id}"
            before = script[:script.index(guard)].splitlines()
            assert not any(line.startswith(("from vae_core", "import vae_core")) for line in before)
    assert used == set(files), "every nodes/*.py must be used"


def test_node_files_leave_the_bundle_to_the_build():
    """nodes/*.py import vae_core as a library (as with vae_core installed); only the build
    adds the sys.path lines, so the guard has one home."""
    for path in (REPO / "nodes").glob("*.py"):
        text = path.read_text()
        assert "sys.path" not in text and "DATA_AREA" not in text, path.name
        assert "\nfrom vae_core.nodes." in text, path.name


NO_BUNDLE = ("This workflow's data folder has no vae_core: import the workflow from its .knwf "
             "file, or run `make workflow` in the vae-mnist-knime checkout.")


def test_nodes_run_the_bundled_vae_core(tmp_path):
    """In a fresh node process vae_core is the copy in the workflow's data area, even in an
    environment where another vae_core is installed (.venv runs this test for that reason)."""
    folder = copy_workflow("VAE_MNIST", tmp_path)
    probe = ("import sys\nimport knime.scripting.io as knio\n"
             "sys.path.insert(0, knio.get_workflow_data_area_dir())\nimport vae_core\n"
             "knio.flow_variables['vae_core_file'] = vae_core.__file__\n")
    res = run_script_isolated(probe, workflow_dir=folder, flow_variables={})
    assert Path(res.flow_variables["vae_core_file"]) == folder / "data" / "vae_core" / "__init__.py"


def test_a_node_in_a_folder_without_its_bundle_says_how_to_get_it(tmp_path):
    """A workflow folder as git has it (no data/vae_core, a build output) fails at its first
    node with one message, even where a vae_core is installed (.venv): never another copy."""
    folder = copy_workflow("VAE_MNIST", tmp_path)
    shutil.rmtree(folder / "data" / "vae_core")
    load = next(n for n in all_nodes(folder) if n.label == "Load MNIST")  # in Train VAE
    with pytest.raises(NodeExecutionError) as err:
        run_script_isolated(node_script(load), workflow_dir=folder,
                            flow_variables=workflow_variables(parse(folder / "workflow.knime")),
                            n_out_tables=3)
    assert NO_BUNDLE in str(err.value) and "Traceback" not in str(err.value)


def test_the_legacy_node_without_its_bundle_says_how_to_get_it(tmp_path):
    folder = copy_workflow("VAE_MNIST_legacy", tmp_path)
    shutil.rmtree(folder / "data" / "vae_core")
    _, nodes, _ = load_workflow(folder)
    source = next(n for n in nodes.values() if n.factory == PYTHON_SOURCE)
    with pytest.raises(NodeExecutionError) as err:
        run_legacy_source_isolated(node_script(source), workflow_dir=folder,
                                   flow_variables=workflow_variables(
                                       parse(folder / "workflow.knime")))
    assert NO_BUNDLE in str(err.value)


def test_batch_override_parser():
    base = {"epochs": 30, "beta": 1.0, "data_dir": ""}
    got = apply_batch_overrides(base, ["-workflow.variable=epochs,2,int",
                                       '-workflow.variable=data_dir,"/x y,z",String',
                                       "-workflow.variable=beta,0.5,double"])
    assert got == {"epochs": 2, "beta": 0.5, "data_dir": "/x y,z"}


# ----------------------------------------------------------------------------- failures
def test_bad_workflow_variable_fails_the_node_with_one_clear_message(tmp_path):
    """A workflow variable reaches the nodes inside the Train VAE component; the first that
    reads it fails with one message."""
    folder = copy_workflow("VAE_MNIST", tmp_path)
    with pytest.raises(NodeExecutionError) as err:
        execute(folder, ["-workflow.variable=data_dir,5,int"], tmp_path)
    message = str(err.value)
    assert message.startswith("Execute failed: ConfigError: data_dir must be a string")
    assert "Traceback" not in message and "-workflow.variable" in message
    folder = copy_workflow("VAE_MNIST_apply", tmp_path)
    with pytest.raises(NodeExecutionError) as err:
        execute(folder, ["-workflow.variable=seed,abc,String"], tmp_path)
    message = str(err.value)
    assert message.startswith("Execute failed: ConfigError: seed must be an integer, got 'abc'")
    assert "-workflow.variable=NAME" in message and "Train VAE component's dialog" in message


def test_a_dialog_value_wins_over_a_workflow_variable_and_is_checked(tmp_path):
    """In VAE_MNIST a workflow variable named like a dialog field changes nothing: the
    Configuration node pushes the dialog's value after it. A dialog value out of the field's
    range fails the component before any node runs."""
    from knime_batch import DialogValueError

    folder = copy_workflow("VAE_MNIST", tmp_path)
    with pytest.raises(DialogValueError, match=r"epochs=0 is below the minimum 1"):
        execute(folder, ["-workflow.variable=epochs,abc,String",
                         "-option=2,epochs-14/integer,0,int"], tmp_path)


def test_load_model_without_a_saved_model_says_what_to_do(tmp_path, mnist_dir):
    folder = copy_workflow("VAE_MNIST_apply", tmp_path)
    _, nodes, _ = load_workflow(folder)
    load = next(n for n in nodes.values() if n.label == "Load Model")
    with pytest.raises(NodeExecutionError, match=r"CheckpointError: Model file .*VAE_MNIST/data/"
                       r"vae_mnist_model.pt does not exist \(model_path = '../../VAE_MNIST/data/"
                       r"vae_mnist_model.pt'\). Run the workflow that saves"):
        run_script_isolated(node_script(load), workflow_dir=folder,
                            flow_variables=workflow_variables(parse(folder / "workflow.knime")),
                            n_out_tables=1, n_out_objects=1)


def _saved_model(folder: Path, latent_dim: int, when: int) -> dict:
    """A small model saved as Save Model does, into ``folder``'s data area, dated ``when``."""
    import torch

    from vae_core.config import TrainConfig
    from vae_core.model.network import VAE
    from vae_core.training.model_file import TrainedVAE, model_record, save_model_file

    torch.manual_seed(latent_dim)
    config = TrainConfig(latent_dim=latent_dim, hidden_dim=16, epochs=1)
    history = [{"epoch": 1, "train_loss": 200.0, "train_recon": 190.0, "train_kl": 10.0,
                "test_loss": 180.0, "test_recon": 171.0, "test_kl": 9.0, "seconds": 0.5}]
    record = model_record(VAE.from_config(config), config, history)
    path = folder / "data" / "vae_mnist_model.pt"
    save_model_file(path, TrainedVAE.from_record(record))
    os.utime(path, (when, when))
    return record


def test_a_renamed_import_is_visible_not_silent(tmp_path):
    """Importing VAE_MNIST beside an older VAE_MNIST makes KNIME name the new copy VAE_MNIST1;
    the apply workflow's default model_path still points at the old copy. Load Model then says
    so (the old workflow's name, save time and settings); with no model there, its error names
    the path it tried and the variable to set."""
    old = copy_workflow("VAE_MNIST", tmp_path)
    new = copy_workflow("VAE_MNIST", tmp_path)
    apply = copy_workflow("VAE_MNIST_apply", tmp_path)
    assert (old.name, new.name, apply.name) == ("VAE_MNIST", "VAE_MNIST1", "VAE_MNIST_apply")
    load = next(n for n in load_workflow(apply)[1].values() if n.label == "Load Model")
    defaults = workflow_variables(parse(apply / "workflow.knime"))

    def run(**variables):
        return run_script_isolated(node_script(load), workflow_dir=apply, n_out_tables=1,
                                   n_out_objects=1, flow_variables={**defaults, **variables})

    _saved_model(new, latent_dim=3, when=1_800_000_000)
    with pytest.raises(NodeExecutionError) as err:
        run()
    message = str(err.value)
    assert str((old / "data" / "vae_mnist_model.pt").resolve()) in message
    assert "set the workflow variable model_path" in message and "VAE_MNIST1" in message
    _saved_model(old, latent_dim=2, when=1_700_000_000)
    stale = run().flow_variables
    assert (stale["model_workflow"], stale["model_latent_dim"]) == ("VAE_MNIST", 2)
    assert stale["model_saved_at"] == "2023-11-14 22:13:20 UTC"
    pointed = run(model_path="../../VAE_MNIST1/data/vae_mnist_model.pt")
    flow = pointed.flow_variables
    assert (flow["model_workflow"], flow["model_latent_dim"]) == ("VAE_MNIST1", 3)
    assert flow["model_saved_at"] == "2027-01-15 08:00:00 UTC"
    assert flow["model_file"] == str((new / "data" / "vae_mnist_model.pt").resolve())


def test_the_score_node_runs_the_bundled_vae_core_with_the_librarys_numbers(tmp_path):
    """The Score node of the committed apply workflow, through KNIME's real Python side, gives
    the numbers vae_core's score_table gives (run in .venv, where vae_core is installed, and in
    .venv-knime, where it is not)."""
    import pickle

    import numpy as np
    import pandas as pd
    import torch
    from knime_runner import Table

    from vae_core.config import ScoreConfig, TrainConfig
    from vae_core.evaluation.scores import reference_scores, score_table
    from vae_core.model.network import VAE
    from vae_core.training.model_file import model_record

    torch.manual_seed(0)
    config = TrainConfig(latent_dim=2, hidden_dim=16, epochs=1, seed=3)
    model = VAE.from_config(config).eval()
    history = [{"epoch": 1, "train_loss": 200.0, "train_recon": 190.0, "train_kl": 10.0,
                "test_loss": 180.0, "test_recon": 171.0, "test_kl": 9.0, "seconds": 0.5}]
    record = model_record(model, config, history,
                          reference=reference_scores(model, torch.rand(300, 784), config.seed))
    rng = np.random.default_rng(1)
    images = pd.DataFrame(rng.integers(0, 256, (40, 784)).astype("int32"),
                          columns=[f"pixel_{i}" for i in range(784)])
    folder = copy_workflow("VAE_MNIST_apply", tmp_path)
    score = next(n for n in load_workflow(folder)[1].values() if n.label == "Score")
    res = run_script_isolated(node_script(score), workflow_dir=folder,
                              flow_variables=workflow_variables(parse(folder / "workflow.knime")),
                              input_objects=[pickle.dumps(record)],
                              input_tables=[Table.from_pandas(images)],
                              n_out_tables=2, n_out_images=1)
    got = res.tables[0].to_pandas()
    want = score_table(model, config.seed, record["reference_scores"], images,
                       ScoreConfig()).table
    for column in ("neg_elbo", "recon", "kl", "percentile"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy())
    assert got["is_unusual"].tolist() == want["is_unusual"].tolist()
    assert res.flow_variables["unusual_count"] == int(want["is_unusual"].sum())
    assert len(res.tables[1].to_pandas()) == min(40, ScoreConfig().unusual_rows)
