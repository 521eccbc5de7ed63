"""The edges of models and tables: every bad model file, foreign table and failed write is one
clear error in one line, changes no earlier file and leaves no temporary file behind. Through
the node steps and the library here; through the real node scripts in test_knime_edges.py.
The corpus is ``_bad_inputs.py``; RELIABILITY.md lists its classes with their counts."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _bad_inputs import CODE, count_by_class, model_files, snapshot, tables
from _knime_steps import PARAMS

from vae_core.errors import CheckpointError, ConfigError, RunDirError, VAEError, WriteError
from vae_core.files import atomic_write_bytes
from vae_core.nodes.experiments import experiments_step, sweep_params_from_flow_variables
from vae_core.nodes.steps import (
    decode_step,
    encode_step,
    load_model_step,
    params_from_flow_variables,
    reconstruct_step,
    save_model_step,
    train_step,
)
from vae_core.outputs.tables import PIXEL_COLUMNS, latent_plane
from vae_core.training.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parent.parent


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


# ----------------------------------------------------------------------------- the corpus
def test_every_bad_model_file_is_one_clear_error_that_says_which_problem(knime_model, tmp_path):
    cases = model_files(knime_model)
    for name, _, data, _ in cases:
        (tmp_path / name).write_bytes(data)
    before = snapshot(tmp_path)
    for name, kind, _, words in cases:
        with pytest.raises(CheckpointError) as err:
            load_model_step(params_from_flow_variables({"model_path": name}), str(tmp_path))
        message = _one_line(err.value)
        assert words in message and str(tmp_path / name) in message, (name, message)
        assert (CODE in message) == (kind == "code"), (name, message)
    assert snapshot(tmp_path) == before


def test_an_unreadable_model_file_is_not_called_damaged(knime_model, tmp_path, monkeypatch):
    import vae_core.training.checkpoint as checkpoint

    path = tmp_path / "m.pt"
    torch.save(knime_model, path)

    def refuse(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint.torch, "load", refuse)
    with pytest.raises(CheckpointError) as err:
        load_model_step(params_from_flow_variables({"model_path": "m.pt"}), str(tmp_path))
    assert _one_line(err.value) == (f"Cannot read model file {path}: Permission denied. Give "
                                    "yourself read access to it, or copy it somewhere you can "
                                    "read it.")


def test_every_bad_table_is_one_clear_error(knime_model):
    for name, _, table, words in tables():
        with pytest.raises(VAEError) as err:
            encode_step(knime_model, table, PARAMS)
        assert words in _one_line(err.value), (name, str(err.value))


def test_reliability_lists_the_corpus_by_class_with_its_counts(knime_model):
    text = (REPO / "RELIABILITY.md").read_text()
    for what, cases in (("model file", model_files(knime_model)), ("table", tables())):
        for kind, n in count_by_class(cases).items():
            assert re.search(rf"\| {what} \| {re.escape(kind)} \| {n} \|", text), (what, kind, n)
    assert len(model_files(knime_model)) + len(tables()) >= 100


# ----------------------------------------------------------------------------- Save Model
def _checkpoint(path: Path, record: dict) -> None:
    save_checkpoint(path, {"config": record["config"], "epoch": 1, "model": record["model"],
                           "optimizer": {"state": {}}, "rng": {}, "history": {"epoch": [1]}})


def test_save_model_never_replaces_a_run_checkpoint(knime_model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _checkpoint(run / "checkpoint.pt", knime_model)
    before = snapshot(tmp_path)
    replace = params_from_flow_variables({"model_path": str(run / "checkpoint.pt"),
                                          "overwrite_model": 1})
    with pytest.raises(CheckpointError) as err:
        save_model_step(knime_model, replace, str(tmp_path))
    assert _one_line(err.value) == (
        f"{run / 'checkpoint.pt'} exists and is a vae-mnist run's checkpoint (its optimizer and "
        "random states would be lost); it was left untouched, whatever overwrite_model says. "
        "Choose another model_path, or move that file away.")
    assert snapshot(tmp_path) == before


def test_save_model_replaces_a_broken_model_file_only_with_overwrite(knime_model, tmp_path):
    path = tmp_path / "m.pt"
    nan = dict(knime_model, model={k: v * float("nan") for k, v in knime_model["model"].items()})
    torch.save(nan, path)
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError) as err:
        save_model_step(knime_model, params_from_flow_variables({"model_path": "m.pt"}),
                        str(tmp_path))
    message = _one_line(err.value)
    assert message.startswith(f"{path} holds a model that cannot be used: The model in it holds "
                              "non-finite weights") and "overwrite_model to 1" in message
    assert snapshot(tmp_path) == before
    again = params_from_flow_variables({"model_path": "m.pt", "overwrite_model": 1})
    assert save_model_step(knime_model, again, str(tmp_path))["status"].tolist() == ["replaced"]
    assert sorted(snapshot(tmp_path)) == ["m.pt"]


def test_save_model_into_a_path_through_a_file(knime_model, tmp_path):
    (tmp_path / "notes").write_text("x")
    before = snapshot(tmp_path)
    params = params_from_flow_variables({"model_path": "notes/model.pt"})
    with pytest.raises(WriteError) as err:
        save_model_step(knime_model, params, str(tmp_path))
    assert _one_line(err.value) == (f"Cannot write {tmp_path / 'notes' / 'model.pt'}: "
                                    f"{tmp_path / 'notes'} is a file, not a folder. Choose "
                                    "another location, or move that file away.")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where, error, words", [
    ("mkstemp", PermissionError(errno.EACCES, "Permission denied"),
     "{folder} is not writable (permission denied). Give yourself write access to it, or "
     "choose a folder you can write to."),
    ("mkstemp", OSError(errno.EROFS, "Read-only file system"),
     "{folder} is not writable (read-only file system). Give yourself write access to it, or "
     "choose a folder you can write to."),
    ("fsync", OSError(errno.ENOSPC, "No space left on device"),
     "the disk is full (no space left on device). Free some space, or choose a folder on "
     "another disk."),
])
def test_save_model_os_errors_name_the_model_path_not_the_temporary_file(
        knime_model, tmp_path, monkeypatch, where, error, words):
    folder = tmp_path / "models"
    save_model_step(knime_model, params_from_flow_variables({"model_path": "models/m.pt"}),
                    str(tmp_path))
    before = snapshot(tmp_path)
    error.filename = str(folder / ".m.pt.abc123.tmp")  # what the OS names: the hidden file

    def fail(*_a, **_k):
        raise error

    import vae_core.files as files
    monkeypatch.setattr(files.tempfile if where == "mkstemp" else files.os, where, fail)
    torch.manual_seed(3)
    other = dict(knime_model, model={k: torch.randn_like(v) for k, v in
                                     knime_model["model"].items()})
    with pytest.raises(WriteError) as err:
        save_model_step(other, params_from_flow_variables({"model_path": "models/m.pt",
                                                           "overwrite_model": 1}), str(tmp_path))
    message = _one_line(err.value)
    assert message == f"Cannot write {folder / 'm.pt'}: " + words.format(folder=folder)
    assert ".tmp" not in message
    assert snapshot(tmp_path) == before  # the old model, and no temporary file


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0,
                    reason="needs a user that file permissions apply to")
def test_a_read_only_folder_for_real(knime_model, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match=rf"^Cannot write {re.escape(str(folder))}/m.pt: "
                           rf"{re.escape(str(folder))} is not writable \(permission denied\)"):
            save_model_step(knime_model, params_from_flow_variables({"model_path": "ro/m.pt"}),
                            str(tmp_path))
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------- other writes
def test_every_write_helper_names_the_path_through_a_file(tmp_path):
    from vae_core.outputs import lab_figures
    from vae_core.outputs.tables import write_table

    (tmp_path / "f").write_text("x")
    before = snapshot(tmp_path)
    target = tmp_path / "f" / "sub"
    writes = {"table": lambda: write_table(pd.DataFrame({"a": [1]}), target / "t.csv"),
              "figure": lambda: lab_figures.save_figure(
                  lab_figures.loss_figure(pd.DataFrame({"epoch": [1], "train_loss": [1.0],
                                                        "test_loss": [1.0]})),
                  target / "loss.png"),
              "bytes": lambda: atomic_write_bytes(target / "b.bin", b"x")}
    for name, write in writes.items():
        with pytest.raises(WriteError) as err:
            write()
        message = _one_line(err.value)
        assert message.startswith(f"Cannot write {target}/") and \
            f"{tmp_path / 'f'} is a file, not a folder" in message, (name, message)
    assert snapshot(tmp_path) == before


def test_a_sweep_folder_through_a_file_names_the_workflow_variable_in_knime(tmp_path):
    (tmp_path / "f").write_text("x")
    before = snapshot(tmp_path)
    params = sweep_params_from_flow_variables({"sweep_dir": "f/sweep", "latent_dims": "2",
                                               "betas": "1", "epochs": 1})
    with pytest.raises(RunDirError) as err:
        experiments_step(params, str(tmp_path))
    assert _one_line(err.value) == (
        f"Run folder {tmp_path / 'f' / 'sweep'} is not writable: {tmp_path / 'f'} is a file, "
        "not a folder. Choose another location, or move that file away (the workflow variable "
        "sweep_dir).")
    assert snapshot(tmp_path) == before


def test_load_model_in_knime_names_the_workflow_variable(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_model_step(params_from_flow_variables({"model_path": "nothing.pt"}), str(tmp_path))
    message = _one_line(err.value)
    assert "set the workflow variable model_path" in message and "--" not in message
    assert str(tmp_path / "nothing.pt") in message


def test_a_missing_mnist_folder_in_knime_names_the_workflow_variable(tmp_path):
    from vae_core.nodes.steps import load_mnist_step

    missing = tmp_path / "nowhere"
    with pytest.raises(VAEError) as err:
        load_mnist_step(params_from_flow_variables({"data_dir": str(missing)}))
    assert _one_line(err.value) == (
        f"MNIST folder {missing} does not exist. Point the workflow variable data_dir / "
        "VAE_MNIST_DIR at the folder holding the four MNIST IDX files (.gz or decompressed).")
    assert not missing.exists()


def test_blank_or_holed_grid_lists_are_refused():
    for variables, words in (({"latent_dims": ""}, "latent_dims is empty."),
                             ({"latent_dims": " , "}, "latent_dims is empty."),
                             ({"betas": "1,,4"}, "betas = '1,,4' has an empty item."),
                             ({"latent_dims": "2,5,"}, "has an empty item")):
        with pytest.raises(ConfigError) as err:
            sweep_params_from_flow_variables(variables)
        assert words in _one_line(err.value)


# ----------------------------------------------------------------------------- tables
@pytest.mark.parametrize("rows", [1, 2, 3])
def test_encode_and_reconstruct_work_on_tiny_tables(knime_model, images_df, rows):
    out = encode_step(knime_model, images_df.iloc[:rows], PARAMS)  # latent size 3: the PCA plane
    assert len(out.latent) == len(out.explorer) == rows
    assert np.isfinite(out.explorer[["plot_x", "plot_y"]].to_numpy()).all()
    assert out.flow_variables["latent_x_title"].startswith("PC 1 of μ(x) (")
    assert len(reconstruct_step(knime_model, images_df.iloc[:rows], PARAMS).table) == 2 * rows


def test_the_latent_plane_of_one_point_and_of_identical_points():
    plane, x, y = latent_plane(np.ones((1, 5)))
    assert plane.tolist() == [[0.0, 0.0]] and x == "PC 1 of μ(x) (0% of variance)"
    plane, _, y = latent_plane(np.array([[0.0, 0, 0], [2, 0, 0]]))
    assert np.allclose(np.abs(plane), [[1, 0], [1, 0]]) and y == "PC 2 of μ(x) (0% of variance)"


def test_a_training_table_smaller_than_the_batch_is_refused(images_df):
    params = params_from_flow_variables({"batch_size": 13, "epochs": 1, "device": "cpu"})
    with pytest.raises(ConfigError) as err:
        train_step(params, images_df, images_df)
    assert _one_line(err.value) == (
        "batch_size=13 is larger than the training table (input 1), which holds 12 images. Use "
        "a batch size of at most 12, or more images.")


def test_repeated_z_columns_are_one_clear_error(knime_model):
    z = pd.DataFrame(np.zeros((2, 4)), columns=["z1", "z2", "z3", "z1"])
    with pytest.raises(VAEError, match=r"^The input table has 1 repeated column name\(s\) \(z1\)"):
        decode_step(knime_model, z, PARAMS)


def test_a_table_with_exactly_the_pixel_columns_and_others_is_read(knime_model, images_df):
    table = images_df.assign(note="x", pixels="y", pixel_count=3)  # not pixel names
    assert len(encode_step(knime_model, table, PARAMS).latent) == 12
    assert list(images_df.columns[-784:]) == PIXEL_COLUMNS


# ----------------------------------------------------------------------------- the CLI
_DRIVER = """
import contextlib, io, json, sys, warnings
warnings.simplefilter("always")  # a warning that reaches stderr is seen on every call
from vae_core import cli
out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(argv)
    out.append([rc, err.getvalue()])
print(json.dumps(out))
"""


def test_cli_model_errors_are_one_line_on_stderr_and_leave_nothing(knime_model, tmp_path):
    """import-model of a code-carrying, damaged or non-finite file; evaluate and --resume of a
    run whose checkpoint holds NaN weights: exit 2, exactly one stderr line, no folder made,
    no file changed. One process for every call."""
    cases = {c[0]: c for c in model_files(knime_model)}
    for name in ("evil_in_record.pt", "datetime.pt", "random_3.pt", "truncated_1210.pt",
                 "nan_encoder.fc1.weight.pt"):
        if name not in cases:
            name = next(n for n in cases if n.startswith(name.split("_")[0]))
        (tmp_path / name).write_bytes(cases[name][2])
    run = tmp_path / "nan_run"
    run.mkdir()
    nan = dict(knime_model, model={k: v * float("nan") for k, v in knime_model["model"].items()})
    _checkpoint(run / "checkpoint.pt", nan)
    before = snapshot(tmp_path)
    files = sorted(p.name for p in tmp_path.glob("*.pt"))
    calls = [["import-model", str(tmp_path / f), "--run-dir", str(tmp_path / f"r_{f}")]
             for f in files]
    calls += [["evaluate", str(run)], ["train", "--run-dir", str(run), "--resume"]]
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(calls)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=True)
    results = json.loads(proc.stdout)
    for argv, (rc, err) in zip(calls, results, strict=True):
        lines = err.splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("vae-mnist: error: "), \
            (argv, err)
        expected = {"evil": CODE, "date": CODE, "rand": "damaged, truncated", "trun": "damaged",
                    "nan_": "non-finite weights", "eval": "non-finite", "trai": "non-finite"}
        key = Path(argv[1]).name[:4] if argv[0] == "import-model" else argv[0][:4]
        assert expected[key] in lines[0], (argv, err)
    assert snapshot(tmp_path) == before  # no run folder made, nothing changed
    assert not list(Path(tempfile.gettempdir()).glob(".checkpoint.pt.*.tmp"))


def test_cli_paths_through_a_file_are_one_line_naming_the_flag(tmp_path, capsys):
    from vae_core import cli

    (tmp_path / "f").write_text("x")
    before = snapshot(tmp_path)
    for argv, words in (
            (["train", "--run-dir", str(tmp_path / "f" / "r")], "(--run-dir)."),
            (["sweep", "--out", str(tmp_path / "f" / "s")], "(--out)."),
            (["repeat", "--out", str(tmp_path / "f" / "s")], "(--out).")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("vae-mnist: error: Run folder ") and \
            err[0].endswith(f"{tmp_path / 'f'} is a file, not a folder. Choose another location, "
                            f"or move that file away {words}"), (argv, err)
    assert snapshot(tmp_path) == before
