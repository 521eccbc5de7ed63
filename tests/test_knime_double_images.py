"""The KNIME stand-in (KNIME 5.5.3's real Python code) with image columns: the PNG value factory
and file stores behind them, as Java registers and reads them; and the stand-in for the legacy
Python Source node."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

DOUBLE = Path(__file__).resolve().parent / "knime_double"
sys.path.insert(0, str(DOUBLE))  # test-only; the stand-in is never installed

import knime_java  # noqa: E402  (first: puts KNIME's real sources on sys.path)
import knime_runner  # noqa: E402,F401  (and the test process's table backend)
from _knime_script import HEAD, run  # noqa: E402
from knime.api import table as knt  # noqa: E402
from knime.api.table import Table  # noqa: E402
from knime_legacy import run_legacy_source  # noqa: E402
from knime_ports import PNG_SIGNATURE, FileStores  # noqa: E402
from knime_runner import (  # noqa: E402
    NodeExecutionError,
    run_script,
    run_script_isolated,
)

# ----------------------------------------------------------------------------- image columns
# Two greyscale 56x56 digits-like images (mode L), built the same way in scripts and in tests.
IMAGES = ("import numpy as np\nfrom PIL import Image\n"
          "pix1 = (np.arange(56 * 56) % 251).astype(np.uint8).reshape(56, 56)\n"
          "pix2 = np.ascontiguousarray(pix1.T[::-1])\n"
          "img1, img2 = Image.fromarray(pix1), Image.fromarray(pix2)\n")
RUNNERS = pytest.mark.parametrize("runner", [run_script, run_script_isolated],
                                  ids=["in_process", "isolated"])


def _images() -> dict:
    names: dict = {}
    exec(IMAGES, names)
    return names


def _png_in_file_store(path: Path) -> bytes:
    """PNGImageValueFactory.serialize's file: 4-byte little-endian length, then the PNG."""
    data = path.read_bytes()
    length = int.from_bytes(data[:4], "little")
    assert len(data) == 4 + length and data[4:].startswith(PNG_SIGNATURE)
    return data[4:]


def test_png_value_factory_is_registered_as_java_registers_it():
    """Java's registration is what makes PIL images a KNIME type; ours must parse to the
    storage PNGImageValueFactory reads and writes: struct<string keys, binary>."""
    import knime._arrow._types as katy
    import knime.api.schema as ks
    import knime.api.types as kty
    from PIL.PngImagePlugin import PngImageFile

    bundle = kty.get_value_factory_bundle_for_python_type_name("PIL.Image.Image")
    assert json.loads(bundle.logical_type) == {"value_factory_class": knime_java.PNG_VALUE_FACTORY}
    assert katy.data_spec_to_arrow(bundle.data_spec_json) == pa.struct(
        [("0", pa.string()), ("1", pa.large_binary())])
    for python_type in (Image.Image, PngImageFile):  # PngImageFile: what to_pandas gives back
        assert ks.logical(python_type).logical_type == knime_java.PNG_LOGICAL_TYPE
    assert type(kty.get_converter(knime_java.PNG_LOGICAL_TYPE)).__name__ == "PNGImageValueFactory"


@RUNNERS
def test_image_columns_become_png_file_store_cells(tmp_path, runner):
    body = (IMAGES + "knio.output_tables[0] = knio.Table.from_pandas(pd.DataFrame("
            "{'id': [1, 2, 3], 'image': [img1, img2, None]}))")
    res = runner(HEAD + body, workflow_dir=tmp_path, flow_variables={}, n_out_tables=1)
    expected = _images()
    raw = res.table_files[0].read_bytes()
    with pa.ipc.open_file(pa.BufferReader(raw)) as reader:
        schema, table = reader.schema, reader.read_all()
    # the column's type as KNIME's Python side writes it: the PNG value factory as the logical
    # type of a "knime.logical_type" extension type, kept in the Arrow field's metadata
    image_type = schema.field("image").type
    assert image_type.extension_name == "knime.logical_type"
    assert json.loads(image_type.__arrow_ext_serialize__()) == {
        "value_factory_class": "org.knime.core.data.image.png.PNGImageValueFactory"}
    assert image_type.storage_type == pa.struct([("0", pa.string()), ("1", pa.large_binary())])
    for marker in (b"ARROW:extension:name", b"knime.logical_type",
                   knime_java.PNG_LOGICAL_TYPE.encode()):
        assert marker in raw
    versions = schema.metadata[b"KNIME:basic:factoryVersions"].decode().split(",")
    assert versions[2] == "0[1[0;1;];]"  # logical type v0 over struct v1 of string, large binary
    # every non-missing cell is its own file store holding the PNG; the table holds only keys
    cells = table.column("image").combine_chunks().storage.to_pylist()
    assert cells[2] is None and [c["1"] for c in cells[:2]] == [None, None]
    keys = [c["0"] for c in cells[:2]]
    assert len(set(keys)) == 2 and not any(";" in k for k in keys)
    handler = knt._backend.file_store_handler  # the test process's, as a downstream node's
    paths = [Path(handler.file_store_key_to_absolute_path(k)) for k in keys]
    node_stores = res.table_files[0].parent / "filestores"
    assert sorted(paths) == sorted(node_stores.iterdir())  # two files, none for the missing cell
    for path, pix in zip(paths, (expected["pix1"], expected["pix2"]), strict=True):
        with Image.open(io.BytesIO(_png_in_file_store(path))) as png:
            assert png.mode == "L" and np.array_equal(np.asarray(png), pix)
    # and read back as a node or a test reads it
    df = res.tables[0].to_pandas()
    assert df["id"].tolist() == [1, 2, 3] and df["image"].isna().tolist() == [False, False, True]
    assert df["image"].iloc[2] is None
    for i, pix in ((0, expected["pix1"]), (1, expected["pix2"])):
        assert isinstance(df["image"].iloc[i], Image.Image)
        assert np.array_equal(np.asarray(df["image"].iloc[i]), pix)


@RUNNERS
def test_image_tables_cross_ports_between_nodes(tmp_path, runner):
    """File-store keys stay valid downstream (in KNIME too): a table the test process built is
    read inside the node, passed on unchanged, and read back here."""
    images = _images()
    table = Table.from_pandas(pd.DataFrame({"image": [images["img1"], None, images["img2"]]}))
    body = ("import numpy as np\ndf = knio.input_tables[0].to_pandas()\n"
            "knio.flow_variables['sums'] = [int(np.asarray(im).sum()) for im in df['image']"
            " if im is not None]\nknio.output_tables[0] = knio.Table.from_pandas(df)")
    res = runner(HEAD + body, workflow_dir=tmp_path, flow_variables={}, input_tables=[table],
                 n_out_tables=1)
    assert res.flow_variables["sums"] == [int(images["pix1"].sum()), int(images["pix2"].sum())]
    out = res.tables[0].to_pandas()["image"]
    assert out.isna().tolist() == [False, True, False]
    assert np.array_equal(np.asarray(out.iloc[0]), images["pix1"])
    assert np.array_equal(np.asarray(out.iloc[2]), images["pix2"])


@pytest.mark.parametrize(("column", "error"), [
    ("[{'a': 1}]", r"ValueError: Data type 'struct<a: int64>' in column 'x' is not supported"),
    ("[Thing()]", r"ArrowInvalid: .*type Thing: did not recognize Python value type"),
    ("[img1, {'a': 1}]", r"AttributeError: 'dict' object has no attribute 'save'"),
    ("[img1, Thing()]", r"AttributeError: 'Thing' object has no attribute 'save'"),
    ("[Image.fromarray(pix1.astype(np.float32))]", r"OSError: cannot write mode F as PNG"),
], ids=["dict", "custom_class", "image_then_dict", "image_then_object", "float_image"])
def test_objects_that_are_no_png_image_fail_the_node(tmp_path, column, error):
    """Registering the PNG type makes PIL images cells, nothing else: other objects fail as
    before, and an image PNG cannot hold (mode F, a float array) fails when it is encoded."""
    body = (IMAGES + "class Thing:\n    pass\n"
            f"knio.output_tables[0] = knio.Table.from_pandas(pd.DataFrame({{'x': {column}}}))")
    with pytest.raises(NodeExecutionError, match="^Execute failed: " + error):
        run(body, tmp_path, n_out_tables=1)


def test_a_custom_object_column_fails_in_a_fresh_process_too(tmp_path):
    body = "class Thing:\n    pass\nknio.output_tables[0] = knio.Table.from_pandas(" \
           "pd.DataFrame({'x': [Thing()]}))"
    with pytest.raises(NodeExecutionError, match="did not recognize Python value type"):
        run_script_isolated(HEAD + body, workflow_dir=tmp_path, flow_variables={},
                            n_out_tables=1)


def test_file_store_keys_resolve_only_through_the_handler(tmp_path):
    (tmp_path / "node-a").mkdir()
    (tmp_path / "node-b").mkdir()
    path, key = FileStores(tmp_path, "node-a").create_file_store()
    assert Path(path) == tmp_path / "node-a" / "filestores" / "0" and Path(path).is_file()
    assert key != path and ";" not in key
    other = FileStores(tmp_path, "node-b")  # another node of the same "workflow"
    assert other.file_store_key_to_absolute_path(key) == path
    for bad in ("node-a:1", "node-a", path, "../node-a:0", "node-c:0", ":0"):
        with pytest.raises(knime_java.JavaError, match="No file store for key"):
            other.file_store_key_to_absolute_path(bad)
    with pytest.raises(FileExistsError):  # a file store is never handed out twice
        FileStores(tmp_path, "node-a").create_file_store()


# ----------------------------------------------------------------------------- legacy
def test_legacy_source_globals(tmp_path):
    res = run_legacy_source("import pandas as pd\nn = flow_variables['n']\n"
                            "output_table = pd.DataFrame({'x': range(n)})\n"
                            "flow_variables['out'] = 2.5",
                            workflow_dir=tmp_path, flow_variables={"n": 3})
    assert list(res.table.index) == ["Row0", "Row1", "Row2"]
    assert res.flow_variables == {"out": 2.5}


def test_legacy_source_errors(tmp_path):
    with pytest.raises(NodeExecutionError, match="did not define 'output_table'"):
        run_legacy_source("x = 1", workflow_dir=tmp_path, flow_variables={})
    with pytest.raises(NodeExecutionError, match="pandas.DataFrame"):
        run_legacy_source("output_table = [1]", workflow_dir=tmp_path, flow_variables={})
    with pytest.raises(NodeExecutionError, match="duplicate values in its index"):
        run_legacy_source("import pandas as pd\noutput_table = pd.DataFrame({'x': [1, 2]}, "
                          "index=['a', 'a'])", workflow_dir=tmp_path, flow_variables={})
