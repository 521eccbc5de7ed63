"""The edges of models and tables through the real node scripts (nodes/*.py) on KNIME 5.5.3's
Python side (the stand-in in tests/knime_double): each bad model file, table and path fails the
node with one line, changes no earlier file and leaves no temporary file. The same cases through
the step functions, and the whole corpus, are in test_edges.py."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "knime_double"))  # test-only

from _bad_inputs import CODE, DAMAGED, NON_FINITE, model_files, snapshot  # noqa: E402
from _knime_steps import images_table, model_object  # noqa: E402
from knime_runner import NodeExecutionError, Table, run_script  # noqa: E402

from vae_core.training.checkpoint import save_checkpoint  # noqa: E402

NODES = Path(__file__).resolve().parent.parent / "nodes"
PORTS = {"load_mnist": (3, 1, 0), "load_model": (1, 0, 1), "save_model": (1, 0, 0), "encode": (2, 1, 0),
         "train_vae": (1, 1, 1), "generate": (1, 1, 0), "experiments": (2, 3, 0)}


def _node(name: str, folder: Path, variables: dict, objects=(), tables=()):
    tables_out, images_out, objects_out = PORTS[name]
    return run_script((NODES / f"{name}.py").read_text(), workflow_dir=folder,
                      flow_variables={"device": "cpu", **variables},
                      input_objects=[pickle.dumps(o) for o in objects],
                      input_tables=[Table.from_pandas(t) for t in tables],
                      n_out_tables=tables_out, n_out_images=images_out,
                      n_out_objects=objects_out)


def _fails(name: str, folder: Path, variables: dict, objects=(), tables=()) -> str:
    before = snapshot(folder)
    with pytest.raises(NodeExecutionError) as err:
        _node(name, folder, variables, objects, tables)
    message = str(err.value)
    assert message.startswith("Execute failed: ") and "\n" not in message, message
    assert snapshot(folder) == before  # nothing changed, no temporary file
    return message


@pytest.fixture(scope="module")
def record() -> dict:
    return model_object()


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path


def test_load_model_node_says_which_problem_a_file_has(record, folder):
    cases = model_files(record)
    kinds = {}
    for prefix in ("random_", "truncated_", "zip_of_text", "evil_in_record", "os_system",
                   "nan_", "tensor", "no_config"):  # the first case of each kind
        name, kind, data, words = next(c for c in cases if c[0].startswith(prefix))
        (folder / "data" / name).write_bytes(data)
        message = _fails("load_model", folder, {"model_path": name})
        assert message.startswith("Execute failed: CheckpointError: ") and words in message, \
            message
        assert str(folder / "data" / name) in message
        assert (CODE in message) == (kind == "code"), message
        kinds[kind] = words
    assert kinds.keys() == {"damaged", "code", "non-finite", "foreign", "invalid"}
    assert kinds["damaged"] == DAMAGED and kinds["non-finite"] == NON_FINITE


def test_save_model_node_never_replaces_a_checkpoint_or_writes_through_a_file(record, folder):
    run = folder / "data" / "run"
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", {"config": record["config"], "epoch": 1,
                                             "model": record["model"], "history": {}})
    message = _fails("save_model", folder, {"model_path": "run/checkpoint.pt",
                                            "overwrite_model": 1}, objects=[record])
    assert "is a vae-mnist run's checkpoint (its optimizer and random states would be lost); " \
        "it was left untouched, whatever overwrite_model says." in message
    (folder / "data" / "notes").write_text("x")
    message = _fails("save_model", folder, {"model_path": "notes/m.pt"}, objects=[record])
    assert message == (f"Execute failed: WriteError: Cannot write {folder / 'data/notes/m.pt'}: "
                       f"{folder / 'data/notes'} is a file, not a folder. Choose another "
                       "location, or move that file away.")


def test_save_model_node_in_a_read_only_folder_names_the_model_path(record, folder,
                                                                    monkeypatch):
    """The node runs in this process, so the operating system's refusal can be staged: the
    error it raises names the hidden temporary file; the node's message names model_path."""
    import errno

    import vae_core.files as files

    def refuse(*_a, dir=None, **_k):  # noqa: A002 - mkstemp's own argument name
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/.m.pt.x1y2.tmp")

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    message = _fails("save_model", folder, {"model_path": "m.pt"}, objects=[record])
    assert message == (f"Execute failed: WriteError: Cannot write {folder / 'data' / 'm.pt'}: "
                       f"{folder / 'data'} is not writable (permission denied). Give yourself "
                       "write access to it, or choose a folder you can write to.")


def test_generate_node_refuses_a_model_with_non_finite_weights(record, folder):
    nan = dict(record, model={k: v * float("nan") for k, v in record["model"].items()})
    assert NON_FINITE in _fails("generate", folder, {}, objects=[nan])


def test_encode_node_on_tiny_and_foreign_tables(record, folder):
    one = images_table().iloc[:1].reset_index(drop=True)
    res = _node("encode", folder, {}, objects=[record], tables=[one])
    explorer = res.tables[1].to_pandas()
    assert len(explorer) == 1 and np.isfinite(explorer[["plot_x", "plot_y"]].to_numpy()).all()
    wide = images_table().assign(pixel_784=0)
    message = _fails("encode", folder, {}, objects=[record], tables=[wide])
    assert "TableError: The input table has 785 pixel columns: 1 beyond pixel_0 ... pixel_783 " \
        "(pixel_784)." in message
    nan = images_table().astype({"pixel_5": "float64"})
    nan.loc[2, "pixel_5"] = float("inf")
    assert "non-finite pixels in 1 row(s) (first at row 2)" in _fails(
        "encode", folder, {}, objects=[record], tables=[nan])


def test_train_node_refuses_a_table_smaller_than_the_batch(folder):
    table = images_table()
    message = _fails("train_vae", folder, {"batch_size": 64, "epochs": 1},
                     tables=[table, table])
    assert message == ("Execute failed: ConfigError: batch_size=64 is larger than the training "
                       "table (input 1), which holds 12 images. Use a batch size of at most 12, "
                       "or more images.")


def test_experiments_node_names_its_workflow_variables(folder):
    assert "ConfigError: latent_dims is empty." in _fails(
        "experiments", folder, {"latent_dims": "", "betas": "1"})
    assert "ConfigError: betas = '1,,4' has an empty item." in _fails(
        "experiments", folder, {"latent_dims": "2", "betas": "1,,4"})
    (folder / "data" / "f").write_text("x")
    message = _fails("experiments", folder, {"latent_dims": "2", "betas": "1",
                                             "sweep_dir": "f/sweep"})
    assert message.endswith("is a file, not a folder. Choose another location, or move that "
                            "file away (the workflow variable sweep_dir).") and "--" not in message


def test_load_mnist_node_names_the_data_dir_variable(folder):
    message = _fails("load_mnist", folder, {"data_dir": str(folder / "nowhere")})
    assert message.startswith("Execute failed: DataError: MNIST folder ") and \
        "Point the workflow variable data_dir / VAE_MNIST_DIR at" in message and "--" not in message


def test_repeated_column_names_cannot_reach_a_node():
    """KNIME never sends them (the steps refuse them: test_edges.py); the table conversion
    itself refuses them, so the node's check is for Python callers."""
    dup = pd.concat([images_table(), images_table()[["label"]]], axis=1)
    with pytest.raises(Exception):  # noqa: B017 - KNIME's own conversion error
        Table.from_pandas(dup)
