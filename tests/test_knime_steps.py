"""vae_core.steps (one function per KNIME node) and vae_core.artifact (the model object)."""

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

from vae_core.artifact import TrainedVAE, as_trained_vae
from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError, TableError, VAEError
from vae_core.model import VAE
from vae_core.steps import (
    FLOW_VARIABLES,
    encode_step,
    generate_step,
    params_from_flow_variables,
    reconstruct_step,
    split_from_table,
)
from vae_core.tables import PIXEL_COLUMNS, image_table

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # knime_workflow/ is not an installed package

HISTORY = [{"epoch": 1, "train_loss": 200.0, "train_recon": 190.0, "train_kl": 10.0,
            "test_loss": 180.0, "test_recon": 171.0, "test_kl": 9.0, "seconds": 0.5}]


@pytest.fixture(scope="module")
def trained() -> TrainedVAE:
    torch.manual_seed(1)
    config = TrainConfig(latent_dim=3, hidden_dim=32, seed=4, device="cpu")
    return TrainedVAE.from_model(VAE(3, 32), config, HISTORY)


@pytest.fixture(scope="module")
def images_df() -> pd.DataFrame:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(12, 784, generator=g)
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
def test_model_object_round_trips_through_pickle(trained):
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(2))
    back = pickle.loads(pickle.dumps(trained))
    assert back.config == trained.config and back.history == HISTORY
    assert torch.equal(back.model().decode(torch.ones(1, 3)), trained.model().decode(
        torch.ones(1, 3)))
    assert torch.equal(back.model().encode(x)[0], trained.model().encode(x)[0])
    assert "latent_dim=3" in str(back) and "held-out loss 180.00" in str(back)
    assert back.loss_table()["test_loss"].tolist() == [180.0]


def test_pickle_holds_plain_data_only(trained):
    """Unpickling imports nothing but the class itself (no torch, numpy or other globals)."""
    imported = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            imported.append((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(pickle.dumps(trained))).load()
    assert imported == [("vae_core.artifact", "TrainedVAE")]


def test_model_object_unpickles_in_a_fresh_process(trained, tmp_path):
    """A new Python process with vae_core installed (nothing else on its path) gets the same
    model: the same bytes of a decoded image."""
    blob = tmp_path / "model.pickle"
    blob.write_bytes(pickle.dumps(trained))
    code = ("import pickle, sys, torch\n"
            "m = pickle.load(open(sys.argv[1], 'rb'))\n"
            "out = m.model().decode(torch.ones(1, 3)).detach()\n"
            "sys.stdout.write(out.numpy().tobytes().hex())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code, str(blob)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out == trained.model().decode(torch.ones(1, 3)).detach().numpy().tobytes().hex()


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "not a vae-mnist model object"),
    ({"format_version": 99}, "newer than this vae_core"),
    ({"config": {"latent_dim": "x"}}, "no valid config"),
    ({"weights": None}, "has no weights"),
    ({"history": "nope"}, "loss history is damaged"),
])
def test_damaged_model_objects_are_rejected_on_unpickling(trained, change, message):
    state = {**trained.__getstate__(), **change}
    obj = TrainedVAE.__new__(TrainedVAE)
    with pytest.raises(CheckpointError, match=message):
        obj.__setstate__(state)


def test_weights_are_loaded_safely(trained):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    buffer = io.BytesIO()
    torch.save({"x": Evil()}, buffer)
    evil = TrainedVAE(trained.config, buffer.getvalue(), HISTORY)
    with pytest.raises(CheckpointError, match="damaged or unsafe"):
        evil.model()
    garbage = TrainedVAE(trained.config, b"not a torch file", HISTORY)
    with pytest.raises(CheckpointError, match="damaged or unsafe"):
        garbage.model()
    mismatched = TrainedVAE(trained.config.replace(latent_dim=5), trained._weights, HISTORY)
    with pytest.raises(CheckpointError, match="does not match"):
        mismatched.model()


def test_wrong_objects_on_the_model_port(trained):
    assert as_trained_vae(trained) is trained
    for wrong in (None, {"weights": b""}, VAE(2, 8)):
        with pytest.raises(VAEError, match="model object from the Train VAE node"):
            as_trained_vae(wrong)


# ----------------------------------------------------------------------------- steps
def test_encode_step(trained, images_df):
    out = encode_step(trained, images_df, PARAMS)
    df = out.table
    assert list(df.columns) == ["image_id", "source", "label", "digit", "z1", "z2", "z3",
                                "logvar1", "logvar2", "logvar3"]
    assert df["image_id"].tolist() == list(range(100, 112))
    assert df["digit"].tolist() == [str(i % 10) for i in range(12)]
    mu, _ = trained.model().encode(torch.tensor(images_df[PIXEL_COLUMNS].to_numpy(np.float32)))
    np.testing.assert_allclose(df[["z1", "z2", "z3"]].to_numpy(), mu.detach().numpy(),
                               rtol=1e-5)
    assert out.png.startswith(b"\x89PNG")


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
    df = encode_step(trained, knime_like, PARAMS).table
    assert df["image_id"].tolist() == list(range(12)) and set(df["source"]) == {"table"}
    no_labels = images_df.drop(columns=["label", "digit"])
    assert set(encode_step(trained, no_labels, PARAMS).table["label"]) == {-1}


def test_steps_reject_bad_tables(trained, images_df):
    with pytest.raises(TableError, match="lacks 784 of the 784 pixel columns"):
        encode_step(trained, pd.DataFrame({"a": [1]}), PARAMS)
    bad_ids = images_df.assign(image_id=[1.5] * 12)
    with pytest.raises(TableError, match="image_id"):
        split_from_table(bad_ids)
    with pytest.raises(VAEError, match="model object"):
        reconstruct_step("not a model", images_df, PARAMS)


def test_mixed_sources_are_kept_per_row(trained, images_df):
    mixed = images_df.assign(source=["train"] * 6 + ["test"] * 6)
    split = split_from_table(mixed)
    assert split.source == ["train"] * 6 + ["test"] * 6
    recon = reconstruct_step(trained, mixed, PARAMS, n=12).table
    by_id = dict(zip(recon["image_id"], recon["source"], strict=False))
    assert all(by_id[i] == ("train" if i < 106 else "test") for i in by_id)


def test_load_and_train_steps_on_a_small_subset(mnist_dir):
    from vae_core.steps import load_mnist_step, train_step

    params = params_from_flow_variables({"epochs": 1, "train_limit": 200, "eval_limit": 50,
                                         "batch_size": 50, "device": "cpu",
                                         "data_dir": str(mnist_dir)})
    load = load_mnist_step(params)
    assert load.samples.shape == (64, 788) and load.evaluation.shape == (50, 788)
    assert load.png.startswith(b"\x89PNG")
    logged: list[str] = []
    out = train_step(params, log=logged.append)
    assert out.loss["epoch"].tolist() == [1] and out.model.history[0]["epoch"] == 1
    assert logged[0].startswith("Training on 200 images") and "epoch 1/1" in logged[1]
    assert Path(str(mnist_dir)).is_dir()


def test_vae_core_never_imports_knime():
    """vae_core is a plain library: only nodes/ and tests/ may touch knime.scripting.io."""
    pattern = re.compile(r"^\s*(import|from)\s+knime\b", re.M)
    offenders = [p.name for p in (REPO / "vae_core").glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    nodes = [p for p in (REPO / "nodes").glob("*.py") if pattern.search(p.read_text())]
    assert len(nodes) == 5  # every new-style node script uses knio; the legacy one does not


def test_decode_step_and_latent_size_mismatch(trained, images_df):
    from vae_core.steps import decode_step

    latent = encode_step(trained, images_df, PARAMS).table  # z1..z3 from this model
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
