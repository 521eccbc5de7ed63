"""Runs a node script the way KNIME's Python Script node does, against the knio double.

TEST-ONLY. Copies the execution contract of KNIO_API.md §2 and §7:
- cwd = the workflow folder, which is also put first on sys.path;
- input objects are unpickled *before* the script runs (their classes must be importable);
- ``exec(compile(source, name, "exec"), {})``: no ``__main__``, no ``__file__``;
- end-of-script checks (§1.10): every output table a knio Table / BatchOutputTable, every
  object and image filled, images bytes-like (an unparseable image makes the port inactive,
  silently), flow variables convertible by py4j; duplicate RowIDs fail the node; output objects
  are pickled; ``str()`` is called on every global;
- any failure becomes ``NodeExecutionError("Execute failed: <Type>: <message>")``.

``run_script_isolated`` does the same in a fresh Python process (PYTHONPATH replaced by the
double's folder, as KNIME replaces it by its plugin paths), with tables crossing as Arrow IPC
files and objects as pickles, like KNIME's file-store ports. ``run_legacy_source`` is the double
of the legacy Python Source node (globals ``flow_variables`` in, ``output_table`` out).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

DOUBLE_DIR = Path(__file__).resolve().parent
if str(DOUBLE_DIR) not in sys.path:
    sys.path.insert(0, str(DOUBLE_DIR))

from knime.api.table import ROW_ID, BatchOutputTable, Table  # noqa: E402
from knime.scripting import _io_containers as _ioc  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NodeExecutionError(RuntimeError):
    """The node failed; the message is what KNIME would show on the node."""


@dataclass
class NodeResult:
    tables: list[Table] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    image_kinds: list[str | None] = field(default_factory=list)  # None = inactive port
    objects: list[bytes] = field(default_factory=list)  # pickles, as KNIME stores them
    object_summaries: list[str] = field(default_factory=list)
    flow_variables: dict[str, Any] = field(default_factory=dict)  # new or changed ones
    stdout: str = ""


# ----------------------------------------------------------------------------- checks
def image_kind(data: bytes) -> str | None:
    """'svg', 'png' or 'other' if KNIME could read the image, None if the port goes inactive."""
    with contextlib.suppress(ET.ParseError, ValueError):
        if ET.fromstring(data).tag.rsplit("}", 1)[-1] == "svg":
            return "svg"
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return "png" if data.startswith(PNG_SIGNATURE) else "other"
    except Exception:
        return None


def _convertible(value: Any) -> bool | None:
    """True: py4j converts it; None: KNIME drops it silently; False: the node fails."""
    if value is None:
        return None
    if isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list):
        if not value or len({type(v) for v in value}) > 1:
            return None
        return type(value[0]) in (bool, int, float, str)
    return False


def _check_flow_variables(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    pushed = {}
    for name, value in after.items():
        ok = _convertible(value)
        if ok is False:
            raise NodeExecutionError(
                f"Execute failed: KnimeUserError: Flow variable '{name}' of type "
                f"'{type(value)}' cannot be translated to a valid KNIME flow variable. Please "
                "use int, float, str or bool.")
        changed = name not in before or before[name] != value
        if ok and changed and not name.startswith("knime."):
            pushed[name] = value
    return pushed


def _check_outputs(result: NodeResult) -> None:
    for i, table in enumerate(_ioc._output_tables):
        if isinstance(table, BatchOutputTable):
            table = table._as_table()
        if not isinstance(table, Table):
            got = "None" if table is None else str(type(table))
            hint = f" knio.output_tables[{i}] has not been populated." if table is None else ""
            raise NodeExecutionError(
                f"Execute failed: KnimeUserError: Output table '{i}' must be of type "
                f"knime.api.Table or knime.api.BatchOutputTable, but got {got}.{hint}")
        result.tables.append(table)
    for i, obj in enumerate(_ioc._output_objects):
        if obj is None:
            raise NodeExecutionError(
                f"Execute failed: KnimeUserError: Expected an object in output_objects[{i}], got "
                f"None. knio.output_objects[{i}] has not been populated.")
    for i, img in enumerate(_ioc._output_images):
        if img is None:
            raise NodeExecutionError(
                f"Execute failed: KnimeUserError: Expected an image in output_images[{i}], got "
                f"None. knio.output_images[{i}] has not been populated.")
        try:
            data = io.BytesIO(img).getvalue()
        except TypeError:
            raise NodeExecutionError(
                f"Execute failed: KnimeUserError: The image in output_images[{i}] of type "
                f"{type(img)} can't be written into a file.") from None
        result.images.append(data)
        result.image_kinds.append(image_kind(data))


def _check_row_ids(tables: list[Table]) -> None:
    """Java's RowKeyChecker, after the script: RowIDs of an output table must be unique."""
    for i, table in enumerate(tables):
        ids = table._data.column(ROW_ID).to_pandas()
        dup = ids[ids.duplicated()]
        if len(dup):
            raise NodeExecutionError(f"Execute failed: Row key checking: Encountered duplicate "
                                     f"row ID \"{dup.iloc[0]}\" in output table {i}.")


# ----------------------------------------------------------------------------- in process
@contextlib.contextmanager
def _in_workflow_dir(workflow_dir: Path):
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(workflow_dir)
    sys.path.insert(0, str(workflow_dir))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def run_script(source: str, *, workflow_dir: str | Path, flow_variables: dict[str, Any],
               input_tables: list[Table] = (), input_objects: list[bytes] = (),
               n_out_tables: int = 0, n_out_images: int = 0, n_out_objects: int = 0,
               name: str = "<Python Script>") -> NodeResult:
    """Execute ``source`` as one Python Script node; returns its outputs or raises."""
    workflow_dir = Path(workflow_dir).resolve()
    result = NodeResult()
    sources = [Table._wrap(t._data, source=True) for t in input_tables]
    with _in_workflow_dir(workflow_dir):
        objects = []
        for i, blob in enumerate(input_objects):
            try:
                objects.append(pickle.loads(blob))
            except Exception as exc:
                raise NodeExecutionError(f"Execute failed: could not read input object {i}: "
                                         f"{type(exc).__name__}: {exc}") from exc
        _ioc.setup(flow_variables=dict(flow_variables), input_objects=objects,
                   input_tables=sources, n_out_tables=n_out_tables, n_out_images=n_out_images,
                   n_out_objects=n_out_objects, workflow_dir=str(workflow_dir),
                   temp_dir=tempfile.gettempdir())
        sys.modules.pop("knime.scripting.io", None)
        workspace: dict[str, Any] = {}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(source, name, "exec"), workspace)
        except (Exception, SystemExit) as exc:
            raise NodeExecutionError(f"Execute failed: {type(exc).__name__}: {exc}") from exc
        finally:
            result.stdout = out.getvalue()
        _check_outputs(result)
        result.flow_variables = _check_flow_variables(dict(flow_variables), _ioc._flow_variables)
        for i, obj in enumerate(_ioc._output_objects):
            try:
                result.objects.append(pickle.dumps(obj))
                result.object_summaries.append(str(obj)[:1000])
            except Exception as exc:
                raise NodeExecutionError(f"Execute failed: {type(exc).__name__}: {exc} "
                                         f"(output_objects[{i}] must be picklable)") from exc
        for var, value in workspace.items():
            if var == "__builtins__":
                continue
            try:
                str(value)
            except Exception:
                raise NodeExecutionError(
                    f"Execute failed: KnimeUserError: It was not possible to represent "
                    f"{type(value)} as a string for the workspace.") from None
    _check_row_ids(result.tables)
    return result


# ----------------------------------------------------------------------------- subprocess
def _write_table(path: Path, table: Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table._data.schema) as w:
        w.write_table(table._data)


def _read_table(path: Path) -> Table:
    with pa.memory_map(str(path)) as source:
        return Table._wrap(pa.ipc.open_file(source).read_all())


def run_script_isolated(source: str, *, workflow_dir: str | Path, flow_variables: dict[str, Any],
                        input_tables: list[Table] = (), input_objects: list[bytes] = (),
                        n_out_tables: int = 0, n_out_images: int = 0, n_out_objects: int = 0,
                        timeout: float = 300) -> NodeResult:
    """Like :func:`run_script`, in a fresh Python process (the real KNIME process boundary)."""
    with tempfile.TemporaryDirectory(prefix="knime-node-") as tmp:
        job = Path(tmp)
        (job / "script.py").write_text(source, encoding="utf-8")
        for i, table in enumerate(input_tables):
            _write_table(job / f"in_table_{i}.arrow", table)
        for i, blob in enumerate(input_objects):
            (job / f"in_object_{i}.pickle").write_bytes(blob)
        (job / "job.json").write_text(json.dumps({
            "workflow_dir": str(Path(workflow_dir).resolve()), "flow_variables": flow_variables,
            "n_in_tables": len(input_tables), "n_in_objects": len(input_objects),
            "n_out_tables": n_out_tables, "n_out_images": n_out_images,
            "n_out_objects": n_out_objects}))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONPATH"] = str(DOUBLE_DIR)  # KNIME replaces PYTHONPATH with its own paths
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(job)],
                              cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        status_file = job / "status.json"
        if not status_file.is_file():
            raise AssertionError(f"node process crashed (exit {proc.returncode}):\n"
                                 f"{proc.stderr[-3000:]}")
        status = json.loads(status_file.read_text())
        if status["error"]:
            raise NodeExecutionError(status["error"])
        return NodeResult(
            tables=[_read_table(job / f"out_table_{i}.arrow") for i in range(n_out_tables)],
            images=[(job / f"out_image_{i}.bin").read_bytes() for i in range(n_out_images)],
            image_kinds=status["image_kinds"],
            objects=[(job / f"out_object_{i}.pickle").read_bytes()
                     for i in range(n_out_objects)],
            object_summaries=status["object_summaries"],
            flow_variables=status["flow_variables"], stdout=status["stdout"])


def _child_main(job: Path) -> None:
    spec = json.loads((job / "job.json").read_text())
    status: dict[str, Any] = {"error": None}
    try:
        result = run_script(
            (job / "script.py").read_text(encoding="utf-8"),
            workflow_dir=spec["workflow_dir"], flow_variables=spec["flow_variables"],
            input_tables=[_read_table(job / f"in_table_{i}.arrow")
                          for i in range(spec["n_in_tables"])],
            input_objects=[(job / f"in_object_{i}.pickle").read_bytes()
                           for i in range(spec["n_in_objects"])],
            n_out_tables=spec["n_out_tables"], n_out_images=spec["n_out_images"],
            n_out_objects=spec["n_out_objects"])
    except NodeExecutionError as exc:
        status["error"] = str(exc)
    else:
        for i, table in enumerate(result.tables):
            _write_table(job / f"out_table_{i}.arrow", table)
        for i, data in enumerate(result.images):
            (job / f"out_image_{i}.bin").write_bytes(data)
        for i, blob in enumerate(result.objects):
            (job / f"out_object_{i}.pickle").write_bytes(blob)
        status.update(image_kinds=result.image_kinds, object_summaries=result.object_summaries,
                      flow_variables=result.flow_variables, stdout=result.stdout)
    (job / "status.json").write_text(json.dumps(status))


# ----------------------------------------------------------------------------- legacy node
@dataclass
class LegacyResult:
    table: pd.DataFrame  # index = the RowIDs KNIME would assign
    flow_variables: dict[str, Any]


def _legacy_row_ids(index: pd.Index) -> list[str]:
    """Legacy rule: an int index value equal to its position → Row{i}, anything else str()."""
    ids = []
    for pos, value in enumerate(index):
        is_int = isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu")
        ids.append(f"Row{pos}" if is_int and int(value) == pos else str(value))
    seen = pd.Index(ids)
    if seen.has_duplicates:
        raise NodeExecutionError("Execute failed: Output DataFrame contains duplicate values in "
                                 f"its index: {sorted(set(seen[seen.duplicated()]))[:5]}")
    return ids


def run_legacy_source(source: str, *, workflow_dir: str | Path, flow_variables: dict[str, Any],
                      name: str = "<Python Source>") -> LegacyResult:
    """Execute ``source`` as the legacy Python Source node (``output_table`` global)."""
    env: dict[str, Any] = {"flow_variables": dict(flow_variables)}
    with _in_workflow_dir(Path(workflow_dir).resolve()):
        try:
            exec(compile(source, name, "exec"), env, env)
        except (Exception, SystemExit) as exc:
            raise NodeExecutionError(f"Execute failed: {type(exc).__name__}: {exc}") from exc
    if "output_table" not in env:
        raise NodeExecutionError("Execute failed: the script did not define 'output_table'")
    out = env["output_table"]
    if not isinstance(out, pd.DataFrame):
        raise NodeExecutionError(f"Execute failed: output_table must be of type "
                                 f"pandas.DataFrame, got {type(out)}")
    table = out.copy()
    table.index = pd.Index(_legacy_row_ids(out.index), name=ROW_ID)
    table.columns = [str(c) for c in table.columns]
    pushed = {}
    for key, value in env["flow_variables"].items():
        if flow_variables.get(key, object()) != value:
            pushed[key] = value if isinstance(value, int | float | str) else str(value)
    return LegacyResult(table=table, flow_variables=pushed)


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]))
