"""Property-based tests: arbitrary input either gives valid data or the project's own error."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from vae_core.data.sources import read_idx
from vae_core.errors import DataError, TableError
from vae_core.outputs.tables import PIXEL_COLUMNS, images_from_table


def _idx_layout(blob: bytes):
    """What a correct IDX reader must make of ``blob``: (shape, header length) or None."""
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0 or blob[2] != 8 or not 1 <= blob[3] <= 4:
        return None
    header = 4 + 4 * blob[3]
    if len(blob) < header:
        return None
    shape = tuple(int.from_bytes(blob[4 + 4 * i:8 + 4 * i], "big") for i in range(blob[3]))
    return (shape, header) if len(blob) == header + int(np.prod(shape, dtype=np.int64)) else None


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda n, d, body: bytes([0, 0, 8, n]) + d[:4 * n] + body,
                           st.integers(0, 5), st.binary(min_size=20, max_size=20),
                           st.binary(max_size=40))))
def test_read_idx_on_arbitrary_bytes(blob):
    layout = _idx_layout(blob)
    try:
        arr = read_idx(blob)
    except DataError as exc:
        assert layout is None, exc  # refused only what is not an IDX file
        assert str(exc).startswith("IDX data ")
        return
    assert layout is not None
    shape, header = layout
    assert arr.dtype == np.uint8 and arr.shape == shape and arr.tobytes() == blob[header:]


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
        word = "truncated" if len(body) < expected else "longer than its header says"
        assert len(body) != expected and f"IDX data is {word}: {len(header) + len(body)} " \
            f"bytes, expected {len(header) + expected}" in str(exc)
        return
    assert len(body) == expected
    assert arr.shape == tuple(dims[:ndim]) and arr.tobytes() == body


_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-1000, 1000), st.none(), st.text(max_size=3), st.booleans())


def _expected_pixels(kind: str, value, n_rows: int):
    """What images_from_table must give: ("error", words of the message) or ("ok", pixel)."""
    if kind == "drop":
        return "error", "lacks 1 of the 784 pixel columns"
    if n_rows == 0:
        return "error", "is empty"
    if kind == "extra":  # the 0.25 frame with a text column beside the pixels
        return "ok", 0.25
    if kind == "mixed" or value is None or isinstance(value, bool | str):
        return "error", "is not numeric"  # an object column, or booleans, or text
    v = float(value)
    if not np.isfinite(v):
        return "error", "missing or non-finite pixels"
    if v < 0 or v > 255:
        return "error", "must be in [0, 1]"
    if v > 1 and v != round(v):
        return "error", "are not whole grey levels"
    grey_levels = v > 1 or isinstance(value, int)  # integer columns are always 0-255 levels
    return "ok", (v / 255.0 if grey_levels else v)


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
        kind = "extra"
        extra = data_frames([column("note", elements=st.text(max_size=3))], index=range_indexes(
            min_size=n_rows, max_size=n_rows))
        frame = pd.concat([frame, data.draw(extra)], axis=1)
    outcome, expected = _expected_pixels(kind, value, n_rows)
    try:
        images = images_from_table(frame)
    except TableError as exc:
        assert outcome == "error" and expected in str(exc), (kind, value, str(exc))
        return
    assert outcome == "ok", (kind, value)
    assert images.dtype == torch.float32 and images.shape == (n_rows, 784)
    assert torch.equal(images, torch.full((n_rows, 784), float(np.float32(expected))))
