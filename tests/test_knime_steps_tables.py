"""vae_core.nodes.steps (one function per KNIME node): the steps that read and write tables
(encode, decode, reconstruct, generate, train, experiments), as KNIME delivers them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _knime_steps import PARAMS

from vae_core.errors import ConfigError, TableError, VAEError
from vae_core.nodes.steps import (
    encode_step,
    generate_step,
    params_from_flow_variables,
    reconstruct_step,
    split_from_table,
    train_step,
)
from vae_core.outputs.tables import PIXEL_COLUMNS
from vae_core.training.model_file import TrainedVAE

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- steps
def _cell_pixels(cell) -> np.ndarray:
    """A 56x56 image cell back to its 784 grey levels (every 2nd pixel of each 2x2 block)."""
    assert cell.mode == "L" and cell.size == (56, 56)
    return np.asarray(cell)[::2, ::2].reshape(-1)


def test_encode_step(knime_model, images_df):
    out = encode_step(knime_model, images_df, PARAMS)
    df = out.latent
    assert list(df.columns) == ["image_id", "source", "label", "digit", "z1", "z2", "z3",
                                "logvar1", "logvar2", "logvar3"]
    assert df["image_id"].tolist() == list(range(100, 112))
    assert df["digit"].tolist() == [str(i % 10) for i in range(12)]
    pixels = torch.tensor(images_df[PIXEL_COLUMNS].to_numpy(np.float32)) / 255
    mu, _ = TrainedVAE.from_record(knime_model).model().encode(pixels)
    # float32 rounding differs with the batch split and the thread count: a near-zero mean
    # needs an absolute tolerance
    np.testing.assert_allclose(df[["z1", "z2", "z3"]].to_numpy(), mu.detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert out.png.startswith(b"\x89PNG")
    # the latent explorer: seeded rows, plotted coordinates = the principal components (z = 3)
    explorer = encode_step(knime_model, images_df, PARAMS, explorer_rows=5).explorer
    assert list(explorer.columns) == ["image_id", "source", "label", "digit", "plot_x", "plot_y",
                                      "z1", "z2", "z3", "image"]
    assert len(explorer) == 5 and explorer["image_id"].is_monotonic_increasing
    again = encode_step(knime_model, images_df, PARAMS, explorer_rows=5).explorer
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


def test_small_tables_carry_their_digits_as_image_cells(knime_model, images_df):
    recon = reconstruct_step(knime_model, images_df, PARAMS, n=3).table
    for cell, (_, row) in zip(recon["image"], recon.iterrows(), strict=True):
        want = np.rint(row[PIXEL_COLUMNS].to_numpy(np.float64) * 255)
        np.testing.assert_array_equal(_cell_pixels(cell), want)
    gen = generate_step(knime_model, PARAMS, n=4).table
    assert len(gen["image"]) == 4 and all(c.size == (56, 56) for c in gen["image"])
    from vae_core.nodes import steps

    latent = encode_step(knime_model, images_df, PARAMS).latent
    big = pd.concat([latent] * 3, ignore_index=True)  # 36 rows
    old = steps.DECODE_IMAGE_ROWS
    steps.DECODE_IMAGE_ROWS = 30
    try:
        decoded = steps.decode_step(knime_model, big, PARAMS).table
    finally:
        steps.DECODE_IMAGE_ROWS = old
    assert decoded["image"].iloc[:30].map(lambda c: c.size).tolist() == [(56, 56)] * 30
    assert decoded["image"].iloc[30:].isna().all()  # beyond the limit: missing cells


def test_reconstruct_and_generate_steps(knime_model, images_df):
    recon = reconstruct_step(knime_model, images_df, PARAMS, n=4).table
    assert len(recon) == 8 and recon["kind"].tolist() == ["original", "reconstruction"] * 4
    assert set(recon["image_id"]) <= set(range(100, 112))
    again = reconstruct_step(knime_model, images_df, PARAMS, n=4).table
    pd.testing.assert_frame_equal(recon, again)  # seeded by the model's seed
    gen = generate_step(knime_model, PARAMS, n=6)
    assert len(gen.table) == 6 and gen.png.startswith(b"\x89PNG")


def test_steps_accept_tables_as_knime_delivers_them(knime_model, images_df):
    """After a trip through KNIME: RowID string index, string dtypes, no image_id/source."""
    knime_like = images_df.drop(columns=["image_id", "source"]).copy()
    knime_like.index = pd.Index([f"Row{i}" for i in range(12)], dtype="string", name="<RowID>")
    df = encode_step(knime_model, knime_like, PARAMS).latent
    assert df["image_id"].tolist() == list(range(12)) and set(df["source"]) == {"table"}
    no_labels = images_df.drop(columns=["label", "digit"])
    assert set(encode_step(knime_model, no_labels, PARAMS).latent["label"]) == {-1}


def test_steps_reject_bad_tables(knime_model, images_df):
    with pytest.raises(TableError, match="lacks 784 of the 784 pixel columns"):
        encode_step(knime_model, pd.DataFrame({"a": [1]}), PARAMS)
    bad_ids = images_df.assign(image_id=[1.5] * 12)
    with pytest.raises(TableError, match="image_id"):
        split_from_table(bad_ids)
    with pytest.raises(VAEError, match="must be the model from a Train VAE"):
        reconstruct_step("not a model", images_df, PARAMS)


def test_mixed_sources_are_kept_per_row(knime_model, images_df):
    mixed = images_df.assign(source=["train"] * 6 + ["test"] * 6)
    split = split_from_table(mixed)
    assert split.source == ["train"] * 6 + ["test"] * 6
    recon = reconstruct_step(knime_model, mixed, PARAMS, n=12).table
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
    modules = list((REPO / "vae_core").rglob("*.py"))
    assert len(modules) > 30  # the subpackages are searched too
    offenders = [p.name for p in modules if pattern.search(p.read_text())]
    assert offenders == []
    scripts = {p.name: p.read_text() for p in (REPO / "nodes").glob("*.py")}
    uses_knio = {name for name, text in scripts.items() if pattern.search(text)}
    # every new-style node script uses knio; the legacy one (globals of the legacy kernel) not
    assert uses_knio == set(scripts) - {"legacy_train_source.py"} and len(uses_knio) >= 10


def test_decode_step_and_latent_size_mismatch(knime_model, images_df):
    from vae_core.nodes.steps import decode_step

    latent = encode_step(knime_model, images_df, PARAMS).latent  # z1..z3 from this model
    out = decode_step(knime_model, latent, PARAMS)
    assert len(out.table) == len(latent) and out.png.startswith(b"\x89PNG")
    np.testing.assert_allclose(out.table[["z1", "z2", "z3"]].to_numpy(),
                               latent[["z1", "z2", "z3"]].to_numpy(), rtol=1e-6)
    with pytest.raises(TableError, match=r"latent size 3 .*z columns: z1, z2\. "):
        decode_step(knime_model, latent.drop(columns="z3"), PARAMS)
    with pytest.raises(TableError, match="z columns: z1, z2, z3, z4"):
        decode_step(knime_model, latent.assign(z4=0.0), PARAMS)
    with pytest.raises(TableError, match="missing or non-finite"):
        decode_step(knime_model, latent.assign(z2=np.nan), PARAMS)


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
    assert sweep_params_from_flow_variables({}).betas == (0.5, 1.0, 2.0, 4.0)  # absent: the lab's
    for variables, message in [({"latent_dims": "2,x"}, "latent_dims must be a comma-separated"),
                               ({"betas": ""}, "betas is empty"),
                               ({"latent_dims": "2,,5"}, "has an empty item"),
                               ({"iw_k": 0}, "iw_k must be an integer"),
                               ({"sweep_dir": " "}, "sweep_dir must be a folder")]:
        with pytest.raises(ConfigError, match=message) as err:
            sweep_params_from_flow_variables(variables)
        assert "-workflow.variable" in str(err.value)


def test_experiments_step_runs_the_grid_and_continues_after_an_interruption(mnist_dir, tmp_path,
                                                                           monkeypatch):
    from vae_core.nodes import experiments as node_experiments
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

    original = node_experiments.run_sweep

    def interrupted(*args, **kwargs):
        return original(*args, **kwargs, on_config_done=stop_after_two)

    with monkeypatch.context() as patch:
        patch.setattr(node_experiments, "run_sweep", interrupted)
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
