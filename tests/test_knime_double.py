"""The knio test double behaves like KNIME's documented contract (KNIO_API.md §1, §2, §7).

If the double were lax, the workflow test would prove nothing, so each rule has a test here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

DOUBLE = Path(__file__).resolve().parent / "knime_double"
sys.path.insert(0, str(DOUBLE))  # test-only; the double is never installed

from knime.api.table import BatchOutputTable, Table  # noqa: E402
from knime_runner import (  # noqa: E402
    NodeExecutionError,
    run_legacy_source,
    run_script,
    run_script_isolated,
)

HEAD = "import knime.scripting.io as knio\nimport pandas as pd\n"


def run(body: str, tmp_path, **kw):
    kw.setdefault("flow_variables", {"knime.workspace": str(tmp_path)})
    return run_script(HEAD + body, workflow_dir=tmp_path, **kw)


# ----------------------------------------------------------------------------- Table
def test_table_constructor_is_forbidden():
    with pytest.raises(RuntimeError, match="from_ methods"):
        Table()


def test_from_pandas_needs_a_dataframe():
    with pytest.raises(ValueError, match="expects a pandas.DataFrame"):
        Table.from_pandas([1, 2, 3])


def test_row_ids_auto_keep_generate():
    df = pd.DataFrame({"a": [1, 2, 3]}, index=[0, 2, 5])
    assert list(Table.from_pandas(df).to_pandas().index) == ["Row0", "Row2", "Row5"]
    assert list(Table.from_pandas(df, row_ids="generate").to_pandas().index) == [
        "Row0", "Row1", "Row2"]
    assert list(Table.from_pandas(df, row_ids="keep").to_pandas().index) == ["0", "2", "5"]
    named = pd.DataFrame({"a": [1, 2]}, index=["x", "y"])
    assert list(Table.from_pandas(named).to_pandas().index) == ["x", "y"]


def test_to_pandas_index_and_string_dtypes():
    df = pd.DataFrame({"s": ["a", "b"], "i": np.array([1, 2], dtype=np.int64)})
    back = Table.from_pandas(df).to_pandas()
    assert back.index.name == "<RowID>"
    assert str(back.index.dtype) == "string"
    assert str(back["s"].dtype) == "string"
    assert back["i"].dtype == np.int64


@pytest.mark.parametrize("dtype", ["int8", "int16", "uint8", "uint32", "float16"])
def test_unsupported_dtypes_are_rejected(dtype):
    df = pd.DataFrame({"x": np.array([1, 2], dtype=dtype)})
    with pytest.raises(ValueError, match="Data type '.*' in column 'x' is not supported"):
        Table.from_pandas(df)


def test_float32_widened_and_category_decoded():
    df = pd.DataFrame({"f": np.array([0.5, 1.5], dtype=np.float32),
                       "c": pd.Categorical(["a", "b"])})
    table = Table.from_pandas(df)
    assert table.schema.field("f").type == pa.float64()
    assert table.schema.field("c").type == pa.string()


def test_column_names_become_strings():
    assert Table.from_pandas(pd.DataFrame({0: [1], 1: [2]})).column_names == ["0", "1"]


def test_int_column_with_missing_values_comes_back_as_float_unless_sentinel():
    table = Table.from_pyarrow(pa.table({"i": pa.array([1, None], pa.int64())}))
    assert table.to_pandas()["i"].dtype == np.float64
    assert table.to_pandas(sentinel="min")["i"].tolist() == [1, -(2 ** 63)]


def test_from_pandas_sentinel_marks_missing():
    table = Table.from_pandas(pd.DataFrame({"i": [1, -1]}), sentinel=-1)
    assert table.to_pyarrow().column("i").null_count == 1


def test_rowid_column_name_is_reserved():
    table = Table.from_pandas(pd.DataFrame({"<RowID>": ["a"], "x": [1]}))
    with pytest.raises(RuntimeError, match="reserved"):
        table.to_pandas()


def test_shape_is_columns_first_and_rowid_not_counted():
    table = Table.from_pandas(pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}))
    assert (table.num_columns, table.num_rows, table.shape) == (2, 3, (2, 3))
    assert table.to_pyarrow().column_names[0] == "<RowID>"


def test_from_pyarrow_row_id_rules_and_batch_sizes():
    t = pa.table({"<RowID>": ["r1", "r2"], "x": [1, 2]})
    assert list(Table.from_pyarrow(t).to_pandas().index) == ["r1", "r2"]
    keep = Table.from_pyarrow(pa.table({"id": ["a", "b"], "x": [1, 2]}), row_ids="keep")
    assert keep.num_columns == 1 and list(keep.to_pandas().index) == ["a", "b"]
    ragged = pa.concat_tables([pa.table({"x": [1]}), pa.table({"x": [2, 3]})])
    with pytest.raises(ValueError, match="same size"):
        Table.from_pyarrow(ragged)
    Table.from_pyarrow(ragged.combine_chunks())


def test_batch_output_table():
    bot = BatchOutputTable.create()
    bot.append(pd.DataFrame({"x": [1, 2]}))
    with pytest.raises(TypeError, match="Can only append"):
        bot.append([1, 2])
    with pytest.raises(ValueError, match="same number of columns"):
        bot.append(pd.DataFrame({"y": ["a"]}))
    assert bot.num_batches == 1
    with pytest.raises(ValueError):
        BatchOutputTable.create(row_ids="auto")


# ----------------------------------------------------------------------------- ports
def test_port_lists_have_fixed_size_and_raise_key_error(tmp_path):
    with pytest.raises(NodeExecutionError, match="KeyError: .*Invalid port index 1"):
        run("knio.output_tables[1] = knio.Table.from_pandas(pd.DataFrame({'a': [1]}))",
            tmp_path, n_out_tables=1)
    with pytest.raises(NodeExecutionError, match="KeyError"):
        run("knio.output_tables[-1]", tmp_path, n_out_tables=1)
    with pytest.raises(NodeExecutionError, match="AttributeError"):
        run("knio.output_tables.append(1)", tmp_path, n_out_tables=1)


def test_every_declared_output_must_be_filled(tmp_path):
    with pytest.raises(NodeExecutionError, match=r"output_tables\[0\] has not been populated"):
        run("pass", tmp_path, n_out_tables=1)
    with pytest.raises(NodeExecutionError, match=r"output_images\[0\] has not been populated"):
        run("pass", tmp_path, n_out_images=1)
    with pytest.raises(NodeExecutionError, match=r"output_objects\[0\] has not been populated"):
        run("pass", tmp_path, n_out_objects=1)


def test_a_dataframe_is_not_a_table(tmp_path):
    with pytest.raises(NodeExecutionError, match="must be of type knime.api.Table"):
        run("knio.output_tables[0] = pd.DataFrame({'a': [1]})", tmp_path, n_out_tables=1)


def test_duplicate_row_ids_fail_after_the_script(tmp_path):
    body = ("df = pd.DataFrame({'a': [1, 2]})\n"
            "knio.output_tables[0] = knio.Table.from_pandas(pd.concat([df, df]))")
    with pytest.raises(NodeExecutionError, match="duplicate row ID \"Row0\""):
        run(body, tmp_path, n_out_tables=1)


def test_images_must_be_bytes_and_bad_bytes_make_the_port_inactive(tmp_path):
    with pytest.raises(NodeExecutionError, match="can't be written into a file"):
        run("knio.output_images[0] = '<svg/>'", tmp_path, n_out_images=1)
    res = run("knio.output_images[0] = b'not an image'", tmp_path, n_out_images=1)
    assert res.image_kinds == [None]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'
    assert run(f"knio.output_images[0] = {svg!r}", tmp_path, n_out_images=1).image_kinds == ["svg"]


def test_flow_variable_rules(tmp_path):
    with pytest.raises(NodeExecutionError, match="Flow variable 'n' of type"):
        run("import numpy as np\nknio.flow_variables['n'] = np.int64(3)", tmp_path)
    res = run("knio.flow_variables.update(a=1, b=2.5, c='x', d=True, e=None, f=[], g=[1, 'a'],"
              " h=[1, 2])\nknio.flow_variables['knime.mine'] = 1", tmp_path)
    assert res.flow_variables == {"a": 1, "b": 2.5, "c": "x", "d": True, "h": [1, 2]}


def test_exec_contract_no_main_no_file_cwd_is_workflow_dir(tmp_path):
    body = ("import os\nknio.flow_variables['name'] = __name__\n"
            "knio.flow_variables['cwd'] = os.getcwd()\n"
            "knio.flow_variables['has_file'] = '__file__' in globals()\n"
            "knio.flow_variables['data'] = knio.get_workflow_data_area_dir()")
    res = run(body, tmp_path)
    assert res.flow_variables["name"] == "builtins"
    assert res.flow_variables["cwd"] == str(tmp_path.resolve())
    assert res.flow_variables["has_file"] is False
    assert res.flow_variables["data"] == str(tmp_path.resolve() / "data")


def test_script_defined_classes_cannot_cross_an_object_port(tmp_path):
    with pytest.raises(NodeExecutionError, match="Pickl|pickle"):
        run("class Model:\n    pass\nknio.output_objects[0] = Model()", tmp_path,
            n_out_objects=1)


def test_unprintable_globals_fail_the_node(tmp_path):
    body = "class Bad:\n    def __str__(self):\n        raise ValueError('no')\nbad = Bad()"
    with pytest.raises(NodeExecutionError, match="represent .* as a string"):
        run(body, tmp_path)


def test_user_errors_keep_their_message(tmp_path):
    with pytest.raises(NodeExecutionError, match="^Execute failed: ValueError: bad epochs$"):
        run("raise ValueError('bad epochs')", tmp_path)


def test_fresh_module_state_for_every_run(tmp_path):
    run("knio.flow_variables['x'] = 1", tmp_path)
    res = run("knio.flow_variables['seen'] = 'x' in knio.flow_variables", tmp_path)
    assert res.flow_variables["seen"] is False


def test_input_tables_and_objects_reach_the_script(tmp_path):
    import pickle

    table = Table.from_pandas(pd.DataFrame({"a": [1, 2, 3]}))
    body = ("df = knio.input_tables[0].to_pandas()\n"
            "knio.flow_variables['n'] = int(df['a'].sum()) + knio.input_objects[0]['k']\n"
            "knio.flow_variables['batches'] = knio.input_tables[0].num_batches\n"
            "knio.output_tables[0] = knio.input_tables[0]")
    res = run(body, tmp_path, input_tables=[table], input_objects=[pickle.dumps({"k": 10})],
              n_out_tables=1)
    assert res.flow_variables == {"n": 16, "batches": 1}
    assert res.tables[0].to_pandas()["a"].tolist() == [1, 2, 3]


def test_objects_cross_a_real_process_boundary(tmp_path):
    """In a fresh process, an object of a class the child cannot import fails before the script
    runs (KNIME unpickles input objects eagerly); a plain object goes through; tables cross as
    Arrow files."""
    import pickle

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
    with pytest.raises(NodeExecutionError, match="could not read input object 0: "
                                                 "ModuleNotFoundError"):
        run_script_isolated(HEAD + "raise AssertionError('script must not run')",
                            workflow_dir=wf, flow_variables={}, input_objects=[foreign])
    table = Table.from_pandas(pd.DataFrame({"a": [1.5, 2.5]}))
    res = run_script_isolated(
        HEAD + "knio.output_tables[0] = knio.Table.from_pandas("
        "knio.input_tables[0].to_pandas() * knio.input_objects[0])\n"
        "knio.output_objects[0] = {'pid': __import__('os').getpid()}",
        workflow_dir=wf, flow_variables={}, input_tables=[table],
        input_objects=[pickle.dumps(2)], n_out_tables=1, n_out_objects=1)
    assert res.tables[0].to_pandas()["a"].tolist() == [3.0, 5.0]
    import os

    assert pickle.loads(res.objects[0])["pid"] != os.getpid()


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
