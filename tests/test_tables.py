"""Table schemas (the KNIME contract) and the table -> tensor conversion."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from vae_core.errors import TableError
from vae_core.outputs import tables
from vae_core.outputs.results import lab_results
from vae_core.training.loop import train

KNIME_SAFE = {"int64", "int32", "float64", "bool", "string"}


@pytest.fixture(scope="module")
def results(small_config, small_data):
    cfg = small_config.replace(epochs=1, latent_dim=3)
    result = train(cfg, small_data, progress=False)
    return lab_results(result.model, cfg, small_data, result.history, n_samples=16, n_recon=5,
                       n_generated=12), small_data


def _dtypes(df):
    return {str(t) for t in df.dtypes}


def test_every_table_uses_knime_safe_dtypes_and_unique_index(results):
    res, _ = results
    for name in ("loss", "samples", "latent", "reconstructions", "generated"):
        df = getattr(res, name)
        assert _dtypes(df) <= KNIME_SAFE, (name, _dtypes(df) - KNIME_SAFE)
        assert isinstance(df.index, pd.RangeIndex) and df.index.is_unique, name


def test_loss_table_schema(results):
    res, _ = results
    assert list(res.loss.columns) == tables.LOSS_COLUMNS
    assert res.loss["epoch"].dtype == np.int64 and len(res.loss) == 1


def test_latent_table_rows_labels_and_z(results):
    res, data = results
    lat = res.latent
    assert len(lat) == len(data.eval)
    assert list(lat.columns[:6]) == ["image_id", "source", "label", "digit", "z1", "z2"]
    assert [c for c in lat.columns if c.startswith("z")] == ["z1", "z2", "z3"]
    assert lat["digit"].dtype == "string"
    assert (lat["digit"] == lat["label"].astype(str)).all()
    assert lat["image_id"].tolist() == data.eval.ids.tolist()
    assert lat["label"].tolist() == data.eval.labels.tolist()


def test_reconstruction_table_pairs(results):
    res, _ = results
    rec = res.reconstructions
    assert len(rec) == 10
    assert rec["kind"].tolist() == ["original", "reconstruction"] * 5
    pix = rec[tables.PIXEL_COLUMNS].to_numpy()
    # the original rows are the held-out images with those ids, the others exactly the
    # reconstructions the figure shows
    data = results[1]
    position = {int(i): n for n, i in enumerate(data.eval.ids.tolist())}
    ids = rec["image_id"].to_numpy()[0::2]
    assert np.array_equal(pix[0::2], data.eval.images[[position[int(i)] for i in ids]].numpy())
    assert np.array_equal(pix[0::2], res.recon_pair[0].numpy())
    assert np.array_equal(pix[1::2], res.recon_pair[1].numpy())
    # both rows of a pair share image id and BCE; BCE recomputed from the pixels agrees
    orig, recon = torch.tensor(pix[0::2]), torch.tensor(pix[1::2])
    assert (rec["image_id"].to_numpy()[0::2] == rec["image_id"].to_numpy()[1::2]).all()
    bce = torch.nn.functional.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), orig,
                                                   reduction="none").sum(1)
    assert np.allclose(rec["bce"].to_numpy()[1::2], bce.numpy(), rtol=1e-4)


def test_generated_table(results):
    res, _ = results
    gen = res.generated
    assert gen.columns[:4].tolist() == ["sample_id", "z1", "z2", "z3"]
    assert len(gen) == 12 and gen.shape[1] == 1 + 3 + 784
    z = gen[["z1", "z2", "z3"]].to_numpy()
    assert abs(z.mean()) < 1.0 and 0.3 < z.std() < 2.0  # drawn from N(0, I)


def test_samples_table_round_trips_to_images(results, small_data):
    res, _ = results
    images = tables.images_from_table(res.samples)
    ids = torch.tensor(res.samples["image_id"].to_numpy())
    pos = {int(i): k for k, i in enumerate(small_data.train.ids)}
    expected = small_data.train.images[[pos[int(i)] for i in ids]]
    assert torch.allclose(images, expected)


def test_images_from_table_errors():
    good = pd.DataFrame(np.full((2, 784), 0.5), columns=tables.PIXEL_COLUMNS)
    assert tables.images_from_table(good).shape == (2, 784)
    with pytest.raises(TableError, match="lacks 1 of the 784 pixel columns"):
        tables.images_from_table(good.drop(columns="pixel_5"))
    with pytest.raises(TableError, match="empty"):
        tables.images_from_table(good.iloc[:0])
    nan = good.copy()
    nan.iloc[1, 3] = np.nan
    with pytest.raises(TableError, match="missing or non-finite pixels in 1 row"):
        tables.images_from_table(nan)
    with pytest.raises(TableError, match="range from"):
        tables.images_from_table(good - 1)
    with pytest.raises(TableError, match="not numeric"):
        tables.images_from_table(good.astype(str))
    grey = pd.DataFrame(np.full((2, 784), 51.0), columns=tables.PIXEL_COLUMNS)
    with pytest.warns(UserWarning, match="0-255"):  # float columns above 1: say so
        scaled = tables.images_from_table(grey)
    assert torch.allclose(scaled, torch.full((2, 784), 0.2))


def test_integer_pixel_columns_are_grey_levels_read_exactly_like_the_mnist_files():
    """Load MNIST writes int32 grey levels; reading them back gives the very float32 pixels
    vae_core.data.splits computes from the IDX bytes (uint8 / 255), whatever the values."""
    levels = np.tile(np.arange(256, dtype=np.int32), 4)[:784]
    frame = pd.DataFrame([levels, levels[::-1]], columns=tables.PIXEL_COLUMNS).astype(np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the designed representation: no warning
        got = tables.images_from_table(frame)
    want = torch.from_numpy(np.stack([levels, levels[::-1]]).astype(np.uint8)).to(
        torch.float32).div_(255.0)
    assert torch.equal(got, want) and got.is_contiguous()
    dark = pd.DataFrame(np.zeros((1, 784), dtype=np.int64), columns=tables.PIXEL_COLUMNS)
    dark["pixel_0"] = 1  # integer columns are grey levels even when all are <= 1
    assert tables.images_from_table(dark)[0, 0].item() == pytest.approx(1 / 255)
    table = tables.image_table(torch.arange(2), "test", torch.tensor([1, 2]), want)
    assert (table[tables.PIXEL_COLUMNS].dtypes == np.int32).all()
    assert torch.equal(tables.images_from_table(table), want)
    with pytest.raises(ValueError, match="not whole grey levels"):
        tables.image_table(torch.arange(1), "test", torch.tensor([1]), torch.full((1, 784), 0.3))


def test_fractional_values_above_one_are_refused():
    frame = pd.DataFrame(np.full((1, 784), 0.5), columns=tables.PIXEL_COLUMNS)
    frame["pixel_0"] = 1.5
    with pytest.raises(TableError, match="not whole grey levels"):
        tables.images_from_table(frame)


def test_labels_from_table():
    assert tables.labels_from_table(pd.DataFrame({"a": [1, 2]})).tolist() == [-1, -1]
    ok = pd.DataFrame({"label": [3, None, 7.0]})
    assert tables.labels_from_table(ok).tolist() == [3, -1, 7]
    with pytest.raises(TableError, match="row 1 holds .3.7."):
        tables.labels_from_table(pd.DataFrame({"label": [1, 3.7]}))
    with pytest.raises(TableError, match="whole digits"):
        tables.labels_from_table(pd.DataFrame({"label": ["x", "2"]}))
