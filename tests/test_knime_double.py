"""The KNIME stand-in runs KNIME 5.5.3's real Python code and adds only what Java does.

knime.scripting.io, knime.api.table and the pandas/Arrow conversion are KNIME's own (from
../shared/knime/python); these tests check the wiring and the Java-side rules the stand-in adds
(RowID check, flow variables as py4j sends them, image reading, object files, process boundary,
the PNG value factory and file stores behind image columns), and that scripts fail here the way
they fail in KNIME.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import pickle
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
from knime.api import table as knt  # noqa: E402
from knime.api.table import BatchOutputTable, Table  # noqa: E402
from knime_ports import PNG_SIGNATURE, FileStores, read_table, write_table  # noqa: E402
from knime_runner import (  # noqa: E402
    NodeExecutionError,
    run_legacy_source,
    run_script,
    run_script_isolated,
)

HEAD = "import knime.scripting.io as knio\nimport pandas as pd\n"
NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


def run(body: str, tmp_path, **kw):
    kw.setdefault("flow_variables", {"knime.workspace": str(tmp_path)})
    return run_script(HEAD + body, workflow_dir=tmp_path, **kw)


# ----------------------------------------------------------------------------- wiring
def test_the_knime_modules_are_knimes_own(tmp_path):
    shared = knime_java.KNIME_PYTHON.resolve()
    assert Path(inspect.getfile(Table)).resolve().is_relative_to(shared)
    assert not (DOUBLE / "knime").exists(), "no hand-written knime package may shadow KNIME's"
    res = run("import knime.api.table as t\nknio.flow_variables['io'] = knio.__file__\n"
              "knio.flow_variables['table'] = t.__file__", tmp_path)
    for name in ("io", "table"):
        assert Path(res.flow_variables[name]).resolve().is_relative_to(shared)


def test_missing_knime_sources_fail_with_one_clear_message(monkeypatch, tmp_path):
    gone = tmp_path / "knime-python-5.5.3"
    monkeypatch.setattr(knime_java, "KNIME_PYTHON", gone)
    monkeypatch.setattr(knime_java, "KNIME_SOURCES", [gone / "org.knime.python3"])
    with pytest.raises(ImportError, match=f"sources are missing: {gone}. Set VAE_KNIME_SOURCES"):
        knime_java.use_knime_sources()


def test_tables_cross_a_port_through_knimes_conversion(tmp_path):
    df = pd.DataFrame({"i": np.array([1, 2, 3]), "f": np.array([0.5, 1, 2], np.float32),
                       "s": ["a", None, "c"]}, index=["x", "y", "z"])
    write_table(Table.from_pandas(df), tmp_path / "t.arrow")
    back = read_table(tmp_path / "t.arrow")
    assert type(back).__name__ == "ArrowSourceTable" and back.num_batches == 1
    got = back.to_pandas()
    assert list(got.index) == ["x", "y", "z"] and got.index.name == "<RowID>"
    assert got["f"].dtype == np.float64 and str(got["s"].dtype) == "string"
    assert got["i"].tolist() == [1, 2, 3] and got["s"].isna().tolist() == [False, True, False]


def test_the_test_process_can_build_tables_after_runs(tmp_path):
    """setupIO installs KNIME's table backend and closeOutputs removes it; the runner restores
    the test process's own, also after a failed node."""
    run("knio.output_tables[0] = knio.Table.from_pandas(pd.DataFrame({'a': [1]}))", tmp_path,
        n_out_tables=1)
    with pytest.raises(NodeExecutionError):
        run("raise ValueError('x')", tmp_path)
    bot = BatchOutputTable.create()
    bot.append(pd.DataFrame({"x": [1, 2]}))
    assert bot.num_batches == 1
    assert Table.from_pandas(pd.DataFrame({"a": [1]})).to_pandas()["a"].tolist() == [1]


def test_in_process_runs_restore_cwd_and_sys_path(tmp_path):
    cwd, path = os.getcwd(), list(sys.path)
    run("import os, sys\nknio.flow_variables['cwd'] = os.getcwd()\n"
        "knio.flow_variables['path0'] = sys.path[0]", tmp_path)
    with pytest.raises(NodeExecutionError, match="Node hangs"):
        run("import sys\nsys.exit(0)", tmp_path)
    assert (os.getcwd(), sys.path) == (cwd, path)


# ----------------------------------------------------------------------------- KNIME's failures
def test_large_string_row_ids_fail_as_in_knime(tmp_path):
    """What pandas 3 produces for a string index: KNIME 5.5 cannot store it."""
    body = ("import pyarrow as pa\nknio.output_tables[0] = knio.Table.from_pyarrow(pa.table("
            "{'<RowID>': pa.array(['r0'], pa.large_string()), 'x': [1]}))")
    with pytest.raises(NodeExecutionError, match=r"^Execute failed: ValueError: Data type "
                       r"'large_string' in column '<RowID>' is not supported in KNIME Python"):
        run(body, tmp_path, n_out_tables=1)


def test_numpy_float64_flow_variable_fails_only_under_numpy_2(tmp_path):
    """py4j sends repr(value) for a float: numpy 2 writes 'np.float64(3.5)', which Java's
    Double.parseDouble rejects, so the node fails; under numpy 1.26 (KNIME 5.5) it is 3.5."""
    body = "import numpy as np\nknio.flow_variables['x'] = np.float64(3.5)"
    if NUMPY_2:
        with pytest.raises(NodeExecutionError, match=r'For input string: "np\.float64\(3\.5\)"'):
            run(body, tmp_path)
    else:
        assert run(body, tmp_path).flow_variables == {"x": 3.5}
    plain = "import numpy as np\nknio.flow_variables['x'] = float(np.float64(3.5))"
    assert run(plain, tmp_path).flow_variables == {"x": 3.5}


@pytest.mark.parametrize("body", ["import sys\nsys.exit(0)", "raise SystemExit(1)"])
def test_sys_exit_makes_the_node_hang(tmp_path, body):
    with pytest.raises(NodeExecutionError, match="^Node hangs: .*SystemExit"):
        run(body, tmp_path, n_out_tables=1)


def test_sys_exit_hangs_in_a_fresh_process_too(tmp_path):
    with pytest.raises(NodeExecutionError, match="^Node hangs: .*SystemExit"):
        run_script_isolated(HEAD + "import sys\nsys.exit()", workflow_dir=tmp_path,
                            flow_variables={})


def test_a_dataframe_is_not_a_table(tmp_path):
    with pytest.raises(NodeExecutionError, match=r"^Execute failed: KnimeUserError: Output table "
                       r"'0' must be of type knime.api.Table or knime.api.BatchOutputTable, "
                       r"but got <class 'pandas.core.frame.DataFrame'>\.$"):
        run("knio.output_tables[0] = pd.DataFrame({'a': [1]})", tmp_path, n_out_tables=1)


def test_duplicate_row_ids_fail_after_the_script(tmp_path):
    """Java's RowKeyChecker reads the written table; Python itself accepts the duplicates."""
    body = ("df = pd.DataFrame({'a': [1, 2]})\n"
            "knio.output_tables[0] = knio.Table.from_pandas(pd.concat([df, df]))\n"
            "knio.flow_variables['script_finished'] = True")
    with pytest.raises(NodeExecutionError, match=r'^Execute failed: Row key checking: .*'
                                                 r'duplicate row ID "Row0"'):
        run(body, tmp_path, n_out_tables=1)


@pytest.mark.parametrize(("dtype", "arrow"), [("int8", "int8"), ("uint8", "uint8"),
                                              ("int16", "int16"), ("float16", "halffloat")])
def test_narrow_numeric_columns_fail(tmp_path, dtype, arrow):
    body = (f"import numpy as np\nknio.output_tables[0] = knio.Table.from_pandas("
            f"pd.DataFrame({{'x': np.array([1, 2], dtype='{dtype}')}}))")
    with pytest.raises(NodeExecutionError, match=f"Data type '{arrow}' in column 'x' is not "
                                                 "supported in KNIME Python"):
        run(body, tmp_path, n_out_tables=1)


def test_every_declared_output_must_be_filled(tmp_path):
    with pytest.raises(NodeExecutionError, match=r"output_tables\[0\] has not been populated"):
        run("pass", tmp_path, n_out_tables=1)
    with pytest.raises(NodeExecutionError, match=r"output_images\[0\] has not been populated"):
        run("pass", tmp_path, n_out_images=1)
    with pytest.raises(NodeExecutionError, match=r"^Execute failed: KnimeUserError: Expected an "
                       r"object in output_objects\[0\], got None"):
        run("pass", tmp_path, n_out_objects=1)


def test_port_lists_have_fixed_size_and_raise_key_error(tmp_path):
    with pytest.raises(NodeExecutionError, match="KeyError: .*Invalid port index 1"):
        run("knio.output_tables[1] = knio.Table.from_pandas(pd.DataFrame({'a': [1]}))",
            tmp_path, n_out_tables=1)


def test_images_are_read_as_java_reads_them(tmp_path):
    with pytest.raises(NodeExecutionError, match="can't be written into a file"):
        run("knio.output_images[0] = '<svg/>'", tmp_path, n_out_images=1)
    assert run("knio.output_images[0] = b'no image'", tmp_path,
               n_out_images=1).image_kinds == [None]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'
    res = run(f"knio.output_images[0] = {svg!r}", tmp_path, n_out_images=1)
    assert (res.image_kinds, res.images) == (["svg"], [svg])


def test_flow_variables_as_java_receives_them(tmp_path):
    res = run("knio.flow_variables.update(a=1, b=2.5, c='x', d=True, e=None, f=[], g=[1, 'a'],"
              " h=[1, 2], t=(0.5, 1.5), s={1}, m={'k': 1}, n=[[1]], big=2**40, same=7)\n"
              "knio.flow_variables['knime.mine'] = 1", tmp_path,
              flow_variables={"same": 7, "knime.workspace": str(tmp_path)})
    assert res.flow_variables == {"a": 1, "b": 2.5, "c": "x", "d": True, "h": [1, 2],
                                  "t": [0.5, 1.5], "big": 2 ** 40}
    with pytest.raises(NodeExecutionError, match="KnimeUserError: Flow variable 'n' of type "
                                                 "'<class 'numpy.int64'>' cannot be translated"):
        run("import numpy as np\nknio.flow_variables['n'] = np.int64(3)", tmp_path)
    with pytest.raises(NodeExecutionError, match="NumberFormatException"):
        run("knio.flow_variables['n'] = 2**70", tmp_path)  # beyond a Java long


def test_exec_contract_no_main_no_file_cwd_is_workflow_dir(tmp_path):
    body = ("import os\nknio.flow_variables['name'] = __name__\n"
            "knio.flow_variables['cwd'] = os.getcwd()\n"
            "knio.flow_variables['has_file'] = '__file__' in globals()\n"
            "knio.flow_variables['data'] = knio.get_workflow_data_area_dir()\n"
            "knio.flow_variables['temp'] = os.path.isdir(knio.get_workflow_temp_dir())\n"
            "import threading\n"
            "knio.flow_variables['main'] = threading.current_thread() is threading.main_thread()")
    res = run(body, tmp_path)
    assert res.flow_variables == {"name": "builtins", "cwd": str(tmp_path.resolve()),
                                  "has_file": False, "data": str(tmp_path.resolve() / "data"),
                                  "temp": True, "main": False}


def test_stdout_reaches_the_node_console(tmp_path):
    assert run("print('hello')", tmp_path).stdout == "hello\n"


def test_script_defined_classes_cannot_cross_an_object_port(tmp_path):
    with pytest.raises(NodeExecutionError, match="Pickl|pickle"):
        run("class Model:\n    pass\nknio.output_objects[0] = Model()", tmp_path,
            n_out_objects=1)


def test_unprintable_globals_fail_the_node(tmp_path):
    body = "class Bad:\n    def __str__(self):\n        raise ValueError('no')\nbad = Bad()"
    with pytest.raises(NodeExecutionError, match="represent Bad as a string"):
        run(body, tmp_path)


def test_user_errors_keep_their_message(tmp_path):
    with pytest.raises(NodeExecutionError, match="^Execute failed: ValueError: bad epochs$"):
        run("raise ValueError('bad epochs')", tmp_path)


def test_fresh_module_state_for_every_run(tmp_path):
    run("knio.flow_variables['x'] = 1", tmp_path)
    res = run("knio.flow_variables['seen'] = 'x' in knio.flow_variables", tmp_path)
    assert res.flow_variables["seen"] is False


def test_batch_output_tables(tmp_path):
    body = ("bot = knio.BatchOutputTable.create(row_ids='generate')\n"
            "bot.append(pd.DataFrame({'x': [1, 2]}))\nbot.append(pd.DataFrame({'x': [3]}))\n"
            "knio.output_tables[0] = bot")
    assert run(body, tmp_path, n_out_tables=1).tables[0].to_pandas()["x"].tolist() == [1, 2, 3]
    with pytest.raises(NodeExecutionError, match="different size than the first batch"):
        run(body.replace("[3]", "[3, 4, 5]"), tmp_path, n_out_tables=1)


def test_input_tables_and_objects_reach_the_script(tmp_path):
    table = Table.from_pandas(pd.DataFrame({"a": [1, 2, 3]}))
    body = ("df = knio.input_tables[0].to_pandas()\n"
            "knio.flow_variables['n'] = int(df['a'].sum()) + knio.input_objects[0]['k']\n"
            "knio.flow_variables['batches'] = knio.input_tables[0].num_batches\n"
            "knio.output_tables[0] = knio.input_tables[0]\n"
            "knio.output_objects[0] = knio.input_objects[0]")
    res = run(body, tmp_path, input_tables=[table], input_objects=[pickle.dumps({"k": 10})],
              n_out_tables=1, n_out_objects=1)
    assert res.flow_variables == {"n": 16, "batches": 1}
    assert res.tables[0].to_pandas()["a"].tolist() == [1, 2, 3]
    assert pickle.loads(res.objects[0]) == {"k": 10} and res.object_summaries == ["{'k': 10}"]


def test_input_objects_are_unpickled_before_the_script_runs(tmp_path):
    """In a fresh process, a class that becomes importable only once the script extends sys.path
    fails at unpickling, in setupIO, before any line of the script runs."""
    class_dir = tmp_path / "only_here"
    class_dir.mkdir()
    (class_dir / "private_mod.py").write_text("class Thing:\n    pass\n")
    sys.path.insert(0, str(class_dir))
    try:
        import private_mod

        foreign = pickle.dumps(private_mod.Thing())
    finally:
        sys.path.remove(str(class_dir))
        sys.modules.pop("private_mod", None)
    wf = tmp_path / "wf"
    wf.mkdir()
    marker = tmp_path / "script-ran"
    body = (f"open({str(marker)!r}, 'w').close()\nimport sys\n"
            f"sys.path.insert(0, {str(class_dir)!r})\nthing = knio.input_objects[0]")
    with pytest.raises(NodeExecutionError, match="ModuleNotFoundError: No module named "
                                                 "'private_mod'"):
        run_script_isolated(HEAD + body, workflow_dir=wf, flow_variables={},
                            input_objects=[foreign])
    assert not marker.exists()


def test_objects_and_tables_cross_a_real_process_boundary(tmp_path):
    table = Table.from_pandas(pd.DataFrame({"a": [1.5, 2.5]}))
    res = run_script_isolated(
        HEAD + "import os\nknio.output_tables[0] = knio.Table.from_pandas("
        "knio.input_tables[0].to_pandas() * knio.input_objects[0])\n"
        "knio.output_objects[0] = {'pid': os.getpid()}\n"
        "knio.flow_variables['pythonpath'] = os.environ['PYTHONPATH']",
        workflow_dir=tmp_path, flow_variables={}, input_tables=[table],
        input_objects=[pickle.dumps(2)], n_out_tables=1, n_out_objects=1)
    assert res.tables[0].to_pandas()["a"].tolist() == [3.0, 5.0]
    assert pickle.loads(res.objects[0])["pid"] != os.getpid()
    assert res.flow_variables["pythonpath"] == os.pathsep.join(
        str(p) for p in knime_java.KNIME_SOURCES)


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
