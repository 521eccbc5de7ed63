"""Property-based tests: arbitrary input either gives valid data or the project's own error."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from vae_core.data import read_idx
from vae_core.errors import DataError, TableError
from vae_core.tables import PIXEL_COLUMNS, images_from_table


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_read_idx_on_arbitrary_bytes(blob):
    try:
        arr = read_idx(blob)
    except DataError as exc:
        assert str(exc)
        return
    assert arr.dtype == np.uint8
    assert 4 + 4 * arr.ndim + arr.size == len(blob)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.lists(st.integers(0, 5), min_size=4, max_size=4),
       st.binary(max_size=200), st.integers(-3, 3))
def test_read_idx_on_wellformed_headers_with_wrong_payload(ndim, dims, payload, extra):
    header = bytes([0, 0, 8, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims[:ndim])
    expected = int(np.prod(dims[:ndim]))
    body = (payload * (expected // max(len(payload), 1) + 1))[: max(expected + extra, 0)]
    try:
        arr = read_idx(header + body)
    except DataError as exc:
        assert "truncated" in str(exc) or "longer" in str(exc)
        return
    assert arr.shape == tuple(dims[:ndim])


_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-1000, 1000), st.none(), st.text(max_size=3), st.booleans())


@pytest.mark.filterwarnings("ignore:Pixel values of the input table go up to")  # 0-255 input
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_images_from_table_on_arbitrary_frames(data):
    n_rows = data.draw(st.integers(0, 3))
    value = data.draw(_values)
    kind = data.draw(st.sampled_from(["uniform", "mixed", "drop", "extra"]))
    frame = pd.DataFrame(np.full((n_rows, 784), 0.25), columns=PIXEL_COLUMNS)
    if kind == "uniform" and n_rows:
        frame = pd.DataFrame({c: [value] * n_rows for c in PIXEL_COLUMNS})
    elif kind == "mixed" and n_rows:
        col = data.draw(st.sampled_from(PIXEL_COLUMNS))
        frame[col] = pd.Series([value] * n_rows, dtype=object)
    elif kind == "drop":
        frame = frame.drop(columns=data.draw(st.sampled_from(PIXEL_COLUMNS)))
    else:
        extra = data_frames([column("note", elements=st.text(max_size=3))], index=range_indexes(
            min_size=n_rows, max_size=n_rows))
        frame = pd.concat([frame, data.draw(extra)], axis=1)
    try:
        images = images_from_table(frame)
    except TableError as exc:
        assert str(exc)
        return
    assert images.dtype == torch.float32 and images.shape == (n_rows, 784)
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
