"""vae_core.nodes.steps (one function per KNIME node) and vae_core.training.model_file
(the model object)."""

from __future__ import annotations

import io
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError, TableError, VAEError
from vae_core.model.network import VAE
from vae_core.nodes.steps import (
    FLOW_VARIABLES,
    encode_step,
    generate_step,
    load_model_step,
    params_from_flow_variables,
    reconstruct_step,
    save_model_step,
    split_from_table,
    train_step,
)
from vae_core.outputs.tables import PIXEL_COLUMNS, image_table
from vae_core.training.model_file import TrainedVAE, load_model_file, model_record

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # knime_workflow/ is not an installed package

HISTORY = [{"epoch": 1, "train_loss": 200.0, "train_recon": 190.0, "train_kl": 10.0,
            "test_loss": 180.0, "test_recon": 171.0, "test_kl": 9.0, "seconds": 0.5}]


@pytest.fixture(scope="module")
def trained() -> dict:
    """A model record, as the Train VAE node puts it on its object port."""
    torch.manual_seed(1)
    config = TrainConfig(latent_dim=3, hidden_dim=32, seed=4, device="cpu")
    return model_record(VAE(3, 32), config, HISTORY)


@pytest.fixture(scope="module")
def images_df() -> pd.DataFrame:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 784), generator=g) / 255.0  # whole grey levels
    return image_table(torch.arange(100, 112), "test", torch.arange(12) % 10, images)


PARAMS = params_from_flow_variables({"device": "cpu"})


# ----------------------------------------------------------------------------- flow variables
def test_flow_variables_are_cast_and_validated():
    p = params_from_flow_variables({
        "latent_dim": 4, "beta": 2, "epochs": "3", "batch_size": 64.0, "learning_rate": 0.01,
        "seed": 7, "data_dir": " /data/mnist ", "device": "CPU", "train_limit": 0,
        "lr_schedule": "Cosine",
        "eval_limit": 50, "knime.workspace": "/ws", "some_other_variable": object()})
    c = p.config
    assert (c.latent_dim, c.beta, c.epochs, c.batch_size, c.learning_rate, c.seed) == \
        (4, 2.0, 3, 64, 0.01, 7)
    assert isinstance(c.beta, float) and isinstance(c.epochs, int)
    assert (c.device, c.train_limit, c.eval_limit) == ("cpu", None, 50)
    assert c.lr_schedule == "cosine"
    assert p.data_dir == "/data/mnist"
    assert params_from_flow_variables({}).data_dir is None
    assert params_from_flow_variables({}).config == TrainConfig()


@pytest.mark.parametrize("variables, message", [
    ({"epochs": "abc"}, "epochs must be an integer, got 'abc'"),
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"beta": "x"}, "beta must be a number"),
    ({"latent_dim": True}, "latent_dim must be an integer, got the boolean"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"device": "tpu"}, "device"),
    ({"lr_schedule": "linear"}, "lr_schedule='linear'"),
    ({"data_dir": 5}, "data_dir must be a string"),
])
def test_bad_flow_variables_give_one_clear_config_error(variables, message):
    with pytest.raises(ConfigError, match=message) as err:
        params_from_flow_variables(variables)
    assert "-workflow.variable" in str(err.value)


def test_declared_workflow_variables_match_what_the_steps_read():
    from knime_workflow.spec import VARIABLES

    assert tuple(v.name for v in VARIABLES) == FLOW_VARIABLES
    defaults = {v.name: v.value for v in VARIABLES}
    assert params_from_flow_variables(defaults).config == TrainConfig()


# ----------------------------------------------------------------------------- model object
def test_model_record_unpickles_with_torch_alone(trained):
    """KNIME unpickles input objects before the script puts the bundled vae_core on sys.path:
    the port's object may need torch, never vae_core."""
    imported = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            imported.append(module)
            return super().find_class(module, name)

    back = Recorder(io.BytesIO(pickle.dumps(trained))).load()
    assert imported and {m.split(".")[0] for m in imported} <= {"torch", "collections"}
    model = TrainedVAE.from_record(back)
    assert model.config == TrainedVAE.from_record(trained).config and model.history == HISTORY
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(2))
    assert torch.equal(model.model().encode(x)[0],
                       TrainedVAE.from_record(trained).model().encode(x)[0])
    assert str(back).startswith("{'format': 'vae-mnist-model', 'format_version': 1, 'summary': "
                                "'vae-mnist model: latent_dim=3, hidden_dim=32, beta=1, 1 epochs,"
                                " held-out loss 180.00'")


def test_model_record_unpickles_in_a_process_without_vae_core(trained, tmp_path):
    """A fresh process in which vae_core cannot be imported at all reads the port's object."""
    blob = tmp_path / "model.pickle"
    blob.write_bytes(pickle.dumps(trained))
    (tmp_path / "sitecustomize.py").write_text(  # hides an installed vae_core (as in .venv)
        "import sys\n"
        "class _NoVaeCore:\n"
        "    def find_spec(self, name, *args):\n"
        "        if name.split('.')[0] == 'vae_core':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _NoVaeCore())\n")
    code = ("import pickle, sys\n"
            "try:\n    import vae_core\nexcept ModuleNotFoundError:\n    pass\n"
            "else:\n    sys.exit('vae_core is importable')\n"
            "r = pickle.load(open(sys.argv[1], 'rb'))\n"
            "sys.stdout.write(r['model']['encoder.fc_mu.weight'].numpy().tobytes().hex())")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code, str(blob)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == trained["model"]["encoder.fc_mu.weight"].numpy().tobytes().hex()


@pytest.mark.parametrize("change, error, message", [
    ({"format": "other"}, VAEError, "must be the model from a Train VAE or Load Model node"),
    ({"format_version": 99}, CheckpointError, "newer than this vae_core"),
    ({"config": {"latent_dim": "x"}}, CheckpointError, "no valid config"),
    ({"model": None}, CheckpointError, "has no weights"),
    ({"model": {"w": "not a tensor"}}, CheckpointError, "has no weights"),
    ({"history": "nope"}, CheckpointError, "loss history is damaged"),
])
def test_damaged_model_records_are_rejected(trained, change, error, message):
    with pytest.raises(error, match=message):
        TrainedVAE.from_record({**trained, **change})


def test_model_record_of_another_architecture_is_rejected(trained):
    other = {**trained, "config": {**trained["config"], "latent_dim": 5}}
    with pytest.raises(CheckpointError, match="does not match"):
        TrainedVAE.from_record(other)


def test_wrong_objects_on_the_model_port(trained):
    for wrong in (None, {"weights": b""}, VAE(2, 8), "model"):
        with pytest.raises(VAEError, match="Connect that node's object output here"):
            TrainedVAE.from_record(wrong)


# ----------------------------------------------------------------------------- model files
def test_save_and_load_model_steps(trained, tmp_path):
    data_area = tmp_path / "wf" / "data"
    table = save_model_step(trained, PARAMS, str(data_area))
    path = data_area / "vae_mnist_model.pt"
    assert table["status"].tolist() == ["written"] and table["model_path"][0] == str(path)
    assert table["latent_dim"].tolist() == [3] and table["vae_heldout_loss"].tolist() == [180.0]
    raw = torch.load(path, weights_only=True)  # tensors and plain data only
    assert raw["format"] == "vae-mnist-model" and raw["config"] == trained["config"]
    before = path.stat().st_mtime_ns
    assert save_model_step(trained, PARAMS, str(data_area))["status"].tolist() == ["unchanged"]
    assert path.stat().st_mtime_ns == before
    loaded = load_model_step(PARAMS, str(data_area))
    assert loaded.table["status"].tolist() == ["loaded"]
    assert TrainedVAE.from_record(loaded.model).same_model(TrainedVAE.from_record(trained))
    absolute = params_from_flow_variables({"device": "cpu", "model_path": str(tmp_path / "m.pt")})
    save_model_step(trained, absolute, str(data_area))
    assert (tmp_path / "m.pt").is_file()


def test_save_model_never_silently_replaces_a_different_model(trained, tmp_path):
    torch.manual_seed(9)
    other = model_record(VAE(3, 32), TrainConfig(latent_dim=3, hidden_dim=32, seed=5), HISTORY)
    save_model_step(other, PARAMS, str(tmp_path))
    path = tmp_path / "vae_mnist_model.pt"
    kept = path.read_bytes()
    with pytest.raises(CheckpointError, match="already holds a different model .*overwrite_model"):
        save_model_step(trained, PARAMS, str(tmp_path))
    assert path.read_bytes() == kept
    replace = params_from_flow_variables({"device": "cpu", "overwrite_model": 1})
    assert save_model_step(trained, replace, str(tmp_path))["status"].tolist() == ["replaced"]
    assert load_model_file(path).same_model(TrainedVAE.from_record(trained))
    foreign = tmp_path / "notes.pt"
    foreign.write_bytes(b"my notes")
    with pytest.raises(CheckpointError, match="not a vae-mnist model file; it was left untouched"):
        save_model_step(trained, params_from_flow_variables(
            {"model_path": str(foreign), "overwrite_model": 1}), str(tmp_path))
    assert foreign.read_bytes() == b"my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt", "vae_mnist_model.pt"]


def test_load_model_refuses_foreign_corrupt_and_code_carrying_files(trained, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    cases = {"missing.pt": None, "evil.pt": {"format": "vae-mnist-model", "x": Evil()},
             "foreign.pt": {"format": "something else"}, "text.pt": b"hello",
             "truncated.pt": "truncate"}
    good = tmp_path / "good.pt"
    save_model_step(trained, params_from_flow_variables({"model_path": str(good)}), str(tmp_path))
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, dict):
            torch.save(content, path)
        elif content == "truncate":
            path.write_bytes(good.read_bytes()[:500])
        elif content is not None:
            path.write_bytes(content)
        with pytest.raises(CheckpointError) as err:
            load_model_step(params_from_flow_variables({"model_path": name}), str(tmp_path))
        message = str(err.value)
        assert str(path) in message and "\n" not in message, name
    assert "could run code" in _load_error(tmp_path, "evil.pt")
    assert "does not exist" in _load_error(tmp_path, "missing.pt")


def _load_error(folder: Path, name: str) -> str:
    with pytest.raises(CheckpointError) as err:
        load_model_step(params_from_flow_variables({"model_path": name}), str(folder))
    return str(err.value)


def test_bad_model_path_variables():
    for bad in ("", "  ", 5):
        with pytest.raises(ConfigError, match="model_path must be a file path"):
            params_from_flow_variables({"model_path": bad})
    for bad in (2, "yes", True):
        with pytest.raises(ConfigError, match="overwrite_model must be 0"):
            params_from_flow_variables({"overwrite_model": bad})


# ----------------------------------------------------------------------------- steps
def _cell_pixels(cell) -> np.ndarray:
    """A 56x56 image cell back to its 784 grey levels (every 2nd pixel of each 2x2 block)."""
    assert cell.mode == "L" and cell.size == (56, 56)
    return np.asarray(cell)[::2, ::2].reshape(-1)


def test_encode_step(trained, images_df):
    out = encode_step(trained, images_df, PARAMS)
    df = out.latent
    assert list(df.columns) == ["image_id", "source", "label", "digit", "z1", "z2", "z3",
                                "logvar1", "logvar2", "logvar3"]
    assert df["image_id"].tolist() == list(range(100, 112))
    assert df["digit"].tolist() == [str(i % 10) for i in range(12)]
    pixels = torch.tensor(images_df[PIXEL_COLUMNS].to_numpy(np.float32)) / 255
    mu, _ = TrainedVAE.from_record(trained).model().encode(pixels)
    # float32 rounding differs with the batch split and the thread count: a near-zero mean
    # needs an absolute tolerance
    np.testing.assert_allclose(df[["z1", "z2", "z3"]].to_numpy(), mu.detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert out.png.startswith(b"\x89PNG")
    # the latent explorer: seeded rows, plotted coordinates = the principal components (z = 3)
    explorer = encode_step(trained, images_df, PARAMS, explorer_rows=5).explorer
    assert list(explorer.columns) == ["image_id", "source", "label", "digit", "plot_x", "plot_y",
                                      "z1", "z2", "z3", "image"]
    assert len(explorer) == 5 and explorer["image_id"].is_monotonic_increasing
    again = encode_step(trained, images_df, PARAMS, explorer_rows=5).explorer
    assert explorer["image_id"].tolist() == again["image_id"].tolist()
    from vae_core.outputs.tables import latent_plane

    plane, x_title, y_title = latent_plane(df[["z1", "z2", "z3"]].to_numpy())
    rows = (explorer["image_id"] - 100).to_numpy()
    np.testing.assert_allclose(explorer[["plot_x", "plot_y"]].to_numpy(), plane[rows])
    assert out.flow_variables == {"latent_x_title": x_title, "latent_y_title": y_title}
    assert x_title.startswith("PC 1 of μ(x) (") and y_title.startswith("PC 2 of μ(x) (")
    for cell, row in zip(explorer["image"], rows, strict=True):
        np.testing.assert_array_equal(_cell_pixels(cell),
                                      images_df[PIXEL_COLUMNS].to_numpy()[row])


def test_small_tables_carry_their_digits_as_image_cells(trained, images_df):
    recon = reconstruct_step(trained, images_df, PARAMS, n=3).table
    for cell, (_, row) in zip(recon["image"], recon.iterrows(), strict=True):
        want = np.rint(row[PIXEL_COLUMNS].to_numpy(np.float64) * 255)
        np.testing.assert_array_equal(_cell_pixels(cell), want)
    gen = generate_step(trained, PARAMS, n=4).table
    assert len(gen["image"]) == 4 and all(c.size == (56, 56) for c in gen["image"])
    from vae_core.nodes import steps

    latent = encode_step(trained, images_df, PARAMS).latent
    big = pd.concat([latent] * 3, ignore_index=True)  # 36 rows
    old = steps.DECODE_IMAGE_ROWS
    steps.DECODE_IMAGE_ROWS = 30
    try:
        decoded = steps.decode_step(trained, big, PARAMS).table
    finally:
        steps.DECODE_IMAGE_ROWS = old
    assert decoded["image"].iloc[:30].map(lambda c: c.size).tolist() == [(56, 56)] * 30
    assert decoded["image"].iloc[30:].isna().all()  # beyond the limit: missing cells


def test_reconstruct_and_generate_steps(trained, images_df):
    recon = reconstruct_step(trained, images_df, PARAMS, n=4).table
    assert len(recon) == 8 and recon["kind"].tolist() == ["original", "reconstruction"] * 4
    assert set(recon["image_id"]) <= set(range(100, 112))
    again = reconstruct_step(trained, images_df, PARAMS, n=4).table
    pd.testing.assert_frame_equal(recon, again)  # seeded by the model's seed
    gen = generate_step(trained, PARAMS, n=6)
    assert len(gen.table) == 6 and gen.png.startswith(b"\x89PNG")


def test_steps_accept_tables_as_knime_delivers_them(trained, images_df):
    """After a trip through KNIME: RowID string index, string dtypes, no image_id/source."""
    knime_like = images_df.drop(columns=["image_id", "source"]).copy()
    knime_like.index = pd.Index([f"Row{i}" for i in range(12)], dtype="string", name="<RowID>")
    df = encode_step(trained, knime_like, PARAMS).latent
    assert df["image_id"].tolist() == list(range(12)) and set(df["source"]) == {"table"}
    no_labels = images_df.drop(columns=["label", "digit"])
    assert set(encode_step(trained, no_labels, PARAMS).latent["label"]) == {-1}


def test_steps_reject_bad_tables(trained, images_df):
    with pytest.raises(TableError, match="lacks 784 of the 784 pixel columns"):
        encode_step(trained, pd.DataFrame({"a": [1]}), PARAMS)
    bad_ids = images_df.assign(image_id=[1.5] * 12)
    with pytest.raises(TableError, match="image_id"):
        split_from_table(bad_ids)
    with pytest.raises(VAEError, match="must be the model from a Train VAE"):
        reconstruct_step("not a model", images_df, PARAMS)


def test_mixed_sources_are_kept_per_row(trained, images_df):
    mixed = images_df.assign(source=["train"] * 6 + ["test"] * 6)
    split = split_from_table(mixed)
    assert split.source == ["train"] * 6 + ["test"] * 6
    recon = reconstruct_step(trained, mixed, PARAMS, n=12).table
    by_id = dict(zip(recon["image_id"], recon["source"], strict=False))
    assert all(by_id[i] == ("train" if i < 106 else "test") for i in by_id)


def test_load_and_train_steps_on_a_small_subset(mnist_dir):
    from vae_core.data.splits import load_mnist
    from vae_core.nodes.steps import RESULT_VARIABLES, load_mnist_step, train_step

    params = params_from_flow_variables({"epochs": 1, "train_limit": 200, "eval_limit": 50,
                                         "batch_size": 50, "device": "cpu", "seed": 3,
                                         "data_dir": str(mnist_dir)})
    load = load_mnist_step(params)
    assert load.train.shape == (200, 788) and load.heldout.shape == (50, 788)
    assert load.samples.shape == (64, 789) and load.png.startswith(b"\x89PNG")  # + image
    assert (load.train[PIXEL_COLUMNS].dtypes == np.int32).all()
    # the grey-level table gives back exactly the pixels read from the MNIST files
    data = load_mnist(params.config, mnist_dir)
    assert torch.equal(split_from_table(load.train).images, data.train.images)
    assert torch.equal(split_from_table(load.heldout).labels, data.eval.labels)
    logged: list[str] = []
    out = train_step(params, load.train, load.heldout, log=logged.append)
    assert out.loss["epoch"].tolist() == [1] and out.model["history"][0]["epoch"] == 1
    assert logged[0].startswith("Training on 200 images, held-out loss on 50")
    assert "epoch 1/1" in logged[1]
    # the settings ride along in every row; results are pushed as plain floats
    assert out.loss[["latent_dim", "beta", "seed", "batch_size", "train_images",
                     "heldout_images"]].iloc[0].tolist() == [2, 1.0, 3, 50, 200, 50]
    assert set(out.flow_variables) == set(RESULT_VARIABLES)
    assert all(type(v) is float for v in out.flow_variables.values())
    assert out.flow_variables["vae_heldout_loss"] == out.loss["test_loss"].iloc[-1]
    # the same training as `vae-mnist run` on the same settings
    from vae_core.training.loop import train

    direct = train(params.config, data, progress=False)
    assert [r["test_loss"] for r in direct.history] == out.loss["test_loss"].tolist()


def test_train_step_rejects_bad_tables(images_df):
    with pytest.raises(TableError, match=r"training table \(input 1\) lacks"):
        train_step(PARAMS, pd.DataFrame({"x": [1]}), images_df)
    with pytest.raises(TableError, match=r"held-out table \(input 2\) is empty"):
        train_step(PARAMS, images_df, images_df.iloc[:0])


def test_vae_core_never_imports_knime():
    """vae_core is a plain library: only nodes/ and tests/ may touch knime.scripting.io."""
    pattern = re.compile(r"^\s*(import|from)\s+knime\b", re.M)
    offenders = [p.name for p in (REPO / "vae_core").glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    nodes = [p for p in (REPO / "nodes").glob("*.py") if pattern.search(p.read_text())]
    assert len(nodes) == 9  # every new-style node script uses knio; the legacy one does not


def test_decode_step_and_latent_size_mismatch(trained, images_df):
    from vae_core.nodes.steps import decode_step

    latent = encode_step(trained, images_df, PARAMS).latent  # z1..z3 from this model
    out = decode_step(trained, latent, PARAMS)
    assert len(out.table) == len(latent) and out.png.startswith(b"\x89PNG")
    np.testing.assert_allclose(out.table[["z1", "z2", "z3"]].to_numpy(),
                               latent[["z1", "z2", "z3"]].to_numpy(), rtol=1e-6)
    with pytest.raises(TableError, match=r"latent size 3 .*z columns: z1, z2\. "):
        decode_step(trained, latent.drop(columns="z3"), PARAMS)
    with pytest.raises(TableError, match="z columns: z1, z2, z3, z4"):
        decode_step(trained, latent.assign(z4=0.0), PARAMS)
    with pytest.raises(TableError, match="missing or non-finite"):
        decode_step(trained, latent.assign(z2=np.nan), PARAMS)


def test_missing_pytorch_fails_the_first_node_with_one_message(tmp_path):
    """KNIME's bundled environment has no PyTorch: importing vae_core (the first thing every
    node script does) names the missing packages and where KNIME's environment is chosen.
    `python -S` is an interpreter without any installed package."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-S", "-c", "import vae_core.nodes.steps"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: vae_core needs the Python package(s) torch (PyTorch), "
                           "torchvision, numpy, pandas<3, matplotlib, pillow, tqdm, missing in "
                           "the Python environment ")
    assert "Preferences > KNIME > Python" in last and "environment.yml" in last


def test_train_step_learns_from_any_grey_image_table():
    """Not only Load MNIST's output: a float 0-1 table without ids or labels (as a CSV Reader
    gives for Fashion-MNIST, or a user's own digits) trains the same way."""
    g = torch.Generator().manual_seed(3)
    pixels = (torch.rand(60, 784, generator=g) > 0.7).double().numpy()
    own = pd.DataFrame(pixels, columns=PIXEL_COLUMNS)
    own.index = pd.Index([f"img{i}" for i in range(60)], dtype="string", name="<RowID>")
    params = params_from_flow_variables({"epochs": 2, "batch_size": 20, "device": "cpu",
                                         "latent_dim": 3})
    out = train_step(params, own.iloc[:40], own.iloc[40:], log=lambda _: None)
    assert out.loss[["train_images", "heldout_images"]].iloc[0].tolist() == [40, 20]
    assert out.loss["train_loss"].iloc[1] < out.loss["train_loss"].iloc[0]
    latent = encode_step(out.model, own, params).latent
    assert len(latent) == 60 and set(latent["label"]) == {-1}


def test_experiment_variables_are_validated():
    from vae_core.nodes.experiments import sweep_params_from_flow_variables

    p = sweep_params_from_flow_variables({"latent_dims": "2, 20", "betas": "1,4", "iw_k": 5,
                                          "iw_images": 7, "epochs": 3})
    assert (p.latent_dims, p.betas, p.iw_k, p.iw_images, p.sweep_dir) == \
        ((2, 20), (1.0, 4.0), 5, 7, "sweep")
    assert p.base.config.epochs == 3
    for variables, message in [({"latent_dims": "2,x"}, "latent_dims must be a comma-separated"),
                               ({"betas": ""}, None), ({"iw_k": 0}, "iw_k must be an integer"),
                               ({"sweep_dir": " "}, "sweep_dir must be a folder")]:
        if message is None:  # empty = the lab's default grid
            assert sweep_params_from_flow_variables(variables).betas == (0.5, 1.0, 2.0, 4.0)
            continue
        with pytest.raises(ConfigError, match=message) as err:
            sweep_params_from_flow_variables(variables)
        assert "-workflow.variable" in str(err.value)


def test_experiments_step_runs_the_grid_and_continues_after_an_interruption(mnist_dir, tmp_path,
                                                                           monkeypatch):
    from vae_core.nodes import steps
    from vae_core.nodes.experiments import experiments_step, sweep_params_from_flow_variables

    params = sweep_params_from_flow_variables({
        "latent_dims": "2,3", "betas": "1,2", "epochs": 1, "train_limit": 300, "eval_limit": 100,
        "batch_size": 100, "device": "cpu", "data_dir": str(mnist_dir), "iw_k": 3,
        "iw_images": 10})
    calls = []

    def stop_after_two(name):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a cancel or crash after two configurations

    original = steps.run_sweep

    def interrupted(*args, **kwargs):
        return original(*args, **kwargs, on_config_done=stop_after_two)

    with monkeypatch.context() as patch:
        patch.setattr(steps, "run_sweep", interrupted)
        with pytest.raises(KeyboardInterrupt):
            experiments_step(params, str(tmp_path), log=lambda _: None)
    out = experiments_step(params, str(tmp_path), log=lambda _: None)
    assert out.flow_variables == {"sweep_trained": 2, "sweep_kept": 2}
    assert out.experiments["config"].tolist() == ["z2_beta1", "z2_beta2", "z3_beta1", "z3_beta2"]
    assert out.experiments["latent"].tolist() == ["z=2", "z=2", "z=3", "z=3"]
    assert (tmp_path / "sweep" / "experiments.csv").is_file()
    assert set(out.claims["kind"]) == {"claim", "target"}
    assert out.claims["verdict"].str.len().min() > 0 and len(out.figures) == 3
    assert all(png.startswith(b"\x89PNG") for png in out.figures)
