"""The KNIME stand-in runs KNIME 5.5.3's real Python code and adds only what Java does.

knime.scripting.io, knime.api.table and the pandas/Arrow conversion are KNIME's own (from
../shared/knime/python); these tests check the wiring and the Java-side rules the stand-in adds
(RowID check, flow variables as py4j sends them, image reading, object files, process boundary,
the PNG value factory and file stores behind image columns), and that scripts fail here the way
they fail in KNIME. Image columns and the legacy node: ``test_knime_double_images.py``.
"""

from __future__ import annotations

import inspect
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DOUBLE = Path(__file__).resolve().parent / "knime_double"
sys.path.insert(0, str(DOUBLE))  # test-only; the stand-in is never installed

import knime_java  # noqa: E402  (first: puts KNIME's real sources on sys.path)
import knime_runner  # noqa: E402,F401  (and the test process's table backend)
from _knime_script import HEAD, NUMPY_2, run  # noqa: E402
from knime.api.table import BatchOutputTable, Table  # noqa: E402
from knime_ports import read_table, write_table  # noqa: E402
from knime_runner import (  # noqa: E402
    NodeExecutionError,
    run_script_isolated,
)


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
