"""vae_core.nodes.steps (one function per KNIME node): flow variables, and
vae_core.training.model_file (the model object and model files). The data steps:
``test_knime_steps_tables.py``."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _knime_steps import HISTORY, PARAMS

from vae_core.config import TrainConfig
from vae_core.errors import CheckpointError, ConfigError, VAEError
from vae_core.model.network import VAE
from vae_core.nodes.steps import (
    FLOW_VARIABLES,
    load_model_step,
    params_from_flow_variables,
    save_model_step,
)
from vae_core.training.model_file import TrainedVAE, load_model_file, model_record

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # knime_workflow/ is not an installed package



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
def test_model_record_unpickles_with_torch_alone(knime_model):
    """KNIME unpickles input objects before the script puts the bundled vae_core on sys.path:
    the port's object may need torch, never vae_core."""
    imported = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            imported.append(module)
            return super().find_class(module, name)

    back = Recorder(io.BytesIO(pickle.dumps(knime_model))).load()
    assert imported and {m.split(".")[0] for m in imported} <= {"torch", "collections"}
    model = TrainedVAE.from_record(back)
    assert model.config == TrainedVAE.from_record(knime_model).config and model.history == HISTORY
    x = torch.rand(5, 784, generator=torch.Generator().manual_seed(2))
    assert torch.equal(model.model().encode(x)[0],
                       TrainedVAE.from_record(knime_model).model().encode(x)[0])
    assert str(back).startswith("{'format': 'vae-mnist-model', 'format_version': 1, 'summary': "
                                "'vae-mnist model: latent_dim=3, hidden_dim=32, beta=1, 1 epochs,"
                                " held-out loss 180.00'")


def test_model_record_unpickles_in_a_process_without_vae_core(knime_model, tmp_path):
    """A fresh process in which vae_core cannot be imported at all reads the port's object."""
    blob = tmp_path / "model.pickle"
    blob.write_bytes(pickle.dumps(knime_model))
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
    assert proc.stdout == knime_model["model"]["encoder.fc_mu.weight"].numpy().tobytes().hex()


@pytest.mark.parametrize("change, error, message", [
    ({"format": "other"}, VAEError, "must be the model from a Train VAE or Load Model node"),
    ({"format_version": 99}, CheckpointError, "newer than this vae_core"),
    ({"config": {"latent_dim": "x"}}, CheckpointError, "no valid config"),
    ({"model": None}, CheckpointError, "has no weights"),
    ({"model": {"w": "not a tensor"}}, CheckpointError, "has no weights"),
    ({"history": "nope"}, CheckpointError, "loss history is damaged"),
])
def test_damaged_model_records_are_rejected(knime_model, change, error, message):
    with pytest.raises(error, match=message):
        TrainedVAE.from_record({**knime_model, **change})


def test_model_record_of_another_architecture_is_rejected(knime_model):
    other = {**knime_model, "config": {**knime_model["config"], "latent_dim": 5}}
    with pytest.raises(CheckpointError, match="does not match"):
        TrainedVAE.from_record(other)


def test_wrong_objects_on_the_model_port(knime_model):
    for wrong in (None, {"weights": b""}, VAE(2, 8), "model"):
        with pytest.raises(VAEError, match="Connect that node's object output here"):
            TrainedVAE.from_record(wrong)


# ----------------------------------------------------------------------------- model files
def test_save_and_load_model_steps(knime_model, tmp_path):
    data_area = tmp_path / "wf" / "data"
    table = save_model_step(knime_model, PARAMS, str(data_area))
    path = data_area / "vae_mnist_model.pt"
    assert table["status"].tolist() == ["written"] and table["model_path"][0] == str(path)
    assert table["latent_dim"].tolist() == [3] and table["vae_heldout_loss"].tolist() == [180.0]
    raw = torch.load(path, weights_only=True)  # tensors and plain data only
    assert raw["format"] == "vae-mnist-model" and raw["config"] == knime_model["config"]
    before = path.stat().st_mtime_ns
    assert save_model_step(knime_model, PARAMS, str(data_area))["status"].tolist() == ["unchanged"]
    assert path.stat().st_mtime_ns == before
    loaded = load_model_step(PARAMS, str(data_area))
    assert loaded.table["status"].tolist() == ["loaded"]
    assert TrainedVAE.from_record(loaded.model).same_model(TrainedVAE.from_record(knime_model))
    absolute = params_from_flow_variables({"device": "cpu", "model_path": str(tmp_path / "m.pt")})
    save_model_step(knime_model, absolute, str(data_area))
    assert (tmp_path / "m.pt").is_file()


def test_save_model_never_silently_replaces_a_different_model(knime_model, tmp_path):
    torch.manual_seed(9)
    other = model_record(VAE(3, 32), TrainConfig(latent_dim=3, hidden_dim=32, seed=5), HISTORY)
    save_model_step(other, PARAMS, str(tmp_path))
    path = tmp_path / "vae_mnist_model.pt"
    kept = path.read_bytes()
    with pytest.raises(CheckpointError, match="already holds a different model .*overwrite_model"):
        save_model_step(knime_model, PARAMS, str(tmp_path))
    assert path.read_bytes() == kept
    replace = params_from_flow_variables({"device": "cpu", "overwrite_model": 1})
    assert save_model_step(knime_model, replace, str(tmp_path))["status"].tolist() == ["replaced"]
    assert load_model_file(path).same_model(TrainedVAE.from_record(knime_model))
    foreign = tmp_path / "notes.pt"
    foreign.write_bytes(b"my notes")
    with pytest.raises(CheckpointError, match="not a model file written by Save Model; it was left"):
        save_model_step(knime_model, params_from_flow_variables(
            {"model_path": str(foreign), "overwrite_model": 1}), str(tmp_path))
    assert foreign.read_bytes() == b"my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt", "vae_mnist_model.pt"]


def test_load_model_refuses_foreign_corrupt_and_code_carrying_files(knime_model, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    cases = {"missing.pt": None, "evil.pt": {"format": "vae-mnist-model", "x": Evil()},
             "foreign.pt": {"format": "something else"}, "text.pt": b"hello",
             "truncated.pt": "truncate"}
    good = tmp_path / "good.pt"
    save_model_step(knime_model, params_from_flow_variables({"model_path": str(good)}), str(tmp_path))
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
