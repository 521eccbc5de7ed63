"""Runs a node script through KNIME 5.5.3's real Python code; only the Java side is ours.

TEST-ONLY. The Python Script node is driven the way KNIME's Java side drives it
(PythonScriptingSession / PythonScriptNodeModel): the real ``ScriptingEntryPoint`` of
``_knime_scripting_launcher.py`` gets ``setCurrentWorkingDirectory(workflow dir)``,
``setupIO(sources, flow variables, ports, callback)`` and ``execute(script, True)`` on a worker
thread (KNIME's py4j thread), after ``registerPythonValueFactory`` for KNIME's PNG image type (as
Java does when the Python process starts; the callback is also the file-store handler); then
``closeOutputs``, ``getOutputTable`` (+ Java's RowID check),
``writeOutputImage`` (+ Java's image reading), ``writeOutputObject`` /
``getOutputObjectStringRepr``, and ``getFlowVariables`` (+ Java's parsing of what py4j sends).
So ``knime.scripting.io``, ``knime.api.table`` and the pandas/Arrow conversion are KNIME's own,
and a script fails here exactly where it fails in KNIME. See knime_java.py for what is stubbed.

- ``run_script``: in this process (quick tests; knio's module state is made fresh per run).
- ``run_script_isolated``: a fresh Python process per node with PYTHONPATH replaced by KNIME's
  plugin folders only (as KNIME does); tables cross as Arrow IPC files, objects as pickles.
- ``run_legacy_source`` (in ``knime_legacy.py``): our own stand-in for the legacy Python
  Source node (a different kernel; its rules are in KNIO_API.md §1.4 and §3).

A script that raises SystemExit (``sys.exit()``) fails as ``NodeExecutionError("Node hangs: ...")``:
KNIME's launcher catches only ``Exception``, the py4j thread dies, and the node never finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import knime_java
from knime_ports import (
    FileStores,
    JavaSink,
    JavaSource,
    PickledObjectSource,
    check_row_ids,
    file_store_root,
    image_kind,
    install_test_backend,
    new_port_dir,
    read_table,
    write_table,
)

knime_java.use_knime_sources()
with warnings.catch_warnings():
    # knime.api.views reads two JavaScript files that KNIME builds into its plugin and the
    # source checkout lacks; KNIME's own message says to ignore this outside KNIME AP.
    warnings.filterwarnings("ignore", "Could not read knime-ui-extension-service")
    import _knime_scripting_launcher as launcher  # KNIME's real launcher module
import knime._backend._gateway as kg  # noqa: E402
import knime.api.table as knt  # noqa: E402
import knime.scripting._io_containers as _ioc  # noqa: E402
from knime.api.table import BatchOutputTable, Table  # noqa: E402,F401  (re-exported)
from py4j.protocol import get_command_part  # noqa: E402

ROW_ID = "<RowID>"


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
    table_files: list[Path] = field(default_factory=list)  # the Arrow files of ``tables``


class _Callback:
    """Java's PythonScriptingSession.PythonScriptingCallback (what ``java_callback`` is). The
    launcher also hands it to the table backend as its file-store handler."""

    def __init__(self, port_dir: Path, workflow_dir: Path, store_root: Path) -> None:
        self._port_dir, self._workflow_dir = port_dir, workflow_dir
        self._file_stores = FileStores(store_root, port_dir.relative_to(store_root).as_posix())
        self.sinks: list[Any] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []

    def create_sink(self) -> JavaSink:
        sink = JavaSink(self._port_dir / f"sink_{len(self.sinks)}.knable")
        self.sinks.append(sink)
        return sink

    def add_stdout(self, text: str) -> None:
        self.stdout.append(text)

    def add_stderr(self, text: str) -> None:
        self.stderr.append(text)

    def get_workflow_dir(self) -> str:
        return str(self._workflow_dir)

    def get_workflow_temp_dir(self) -> str:
        path = self._port_dir.parent / "workflow-temp"  # FileUtil.getWorkflowTempDir()
        path.mkdir(exist_ok=True)
        return str(path)

    def get_global_proxy_list(self) -> list:  # no proxy configured in KNIME's preferences
        return []

    def create_file_store(self) -> tuple[str, str]:
        return self._file_stores.create_file_store()

    def file_store_key_to_absolute_path(self, key: str) -> str:
        return self._file_stores.file_store_key_to_absolute_path(key)


def _java_call(method, *args: Any) -> Any:
    """A Java-to-Python call: a Python exception comes back to Java and fails the node."""
    try:
        return method(*args)
    except Exception as exc:
        raise NodeExecutionError(f"Execute failed: {type(exc).__name__}: {exc}") from exc


def _session(source: str, workflow_dir: Path, flow_variables: dict[str, Any],
             table_files: list[Path], object_files: list[Path], n_out_tables: int,
             n_out_images: int, n_out_objects: int, port_dir: Path,
             store_root: Path) -> NodeResult:
    """PythonScriptNodeModel.execute, Java's side of it, against the real entry point."""
    callback = _Callback(port_dir, workflow_dir, store_root)
    entry = launcher.ScriptingEntryPoint()
    knime_java.register_value_factories(
        lambda *factory: _java_call(entry.registerPythonValueFactory, *factory))
    entry.setCurrentWorkingDirectory(str(workflow_dir))
    # PythonIOUtils.createSources: pickled objects first, then tables
    sources = ([PickledObjectSource(p) for p in object_files]
               + [JavaSource(p) for p in table_files])
    _java_call(entry.setupIO, sources, dict(flow_variables), n_out_tables, n_out_images,
               n_out_objects, False, callback)
    answer = json.loads(_java_call(entry.execute, source, True))
    result = NodeResult(stdout="".join(callback.stdout))
    if answer["status"] != "SUCCESS":  # checkExecutionAnswer; the traceback only goes to the log
        raise NodeExecutionError("Execute failed: " + answer["description"])
    # PythonScriptingSession.getOutputs: tables, images, objects; then the flow variables
    _java_call(entry.closeOutputs, True)
    for i in range(n_out_tables):
        sink = _java_call(entry.getOutputTable, i)
        check_row_ids(sink.path, i)
        result.tables.append(read_table(sink.path))
        result.table_files.append(sink.path)
    for i in range(n_out_images):
        path = port_dir / f"image_{i}"
        _java_call(entry.writeOutputImage, i, str(path))
        result.images.append(path.read_bytes())
        result.image_kinds.append(image_kind(result.images[-1]))
    for i in range(n_out_objects):
        path = port_dir / f"object_{i}.pickle"
        _java_call(entry.writeOutputObject, i, str(path))
        _java_call(entry.getOutputObjectType, i)
        result.object_summaries.append(_java_call(entry.getOutputObjectStringRepr, i))
        result.objects.append(path.read_bytes())
    returned = _java_call(entry.getFlowVariables)  # a java.util.LinkedHashMap, via py4j
    client = kg.client_server._gateway_client
    java_map = client.java_value(get_command_part(returned).rstrip("\n"))
    result.flow_variables = knime_java.pushed_flow_variables(
        flow_variables, knime_java.returned_flow_variables(java_map))
    return result


def _run_on_py4j_thread(name: str, **session: Any) -> NodeResult:
    """Run the session on its own thread, as KNIME's execute runs on a py4j worker thread."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = _session(**session)
        except BaseException as exc:  # sorted out below, as Java would see it
            outcome["error"] = exc

    kg.client_server = knime_java.FakeJvm()  # a fresh JVM per node
    thread = threading.Thread(target=target, name=f"py4j worker ({name})")
    thread.start()
    thread.join()
    error = outcome.get("error")
    if error is None:
        return outcome["result"]
    if isinstance(error, NodeExecutionError):
        raise error
    if isinstance(error, knime_java.JavaError):
        raise NodeExecutionError(f"Execute failed: {error}") from None
    if isinstance(error, knime_java.JavaFailure):
        raise NodeExecutionError(
            f"Execute failed: py4j's Java side could not read a value Python sent ({error}); "
            "KNIME reports this as a py4j communication error") from None
    if isinstance(error, Exception):
        raise error  # a bug in this harness, not a node failure
    raise NodeExecutionError(
        f"Node hangs: {name} raised {type(error).__name__}{error.args!r}, which KNIME's launcher "
        "does not catch (it catches Exception only); the py4j thread dies and KNIME waits for "
        "ever. Never call sys.exit() or exit() in a node script.") from None


def _fresh_knio_state() -> None:
    """A new node process in KNIME starts with empty knio state; drop what a previous run left."""
    for name in ("knime.scripting.io", "knime_io"):
        sys.modules.pop(name, None)
    _ioc._flow_variables.clear()
    for ports in (_ioc._input_objects, _ioc._input_tables, _ioc._output_tables,
                  _ioc._output_images, _ioc._output_objects):
        ports.clear()
    _ioc._java_callback = None


@contextlib.contextmanager
def _process_state_restored():
    """In-process runs only: undo what the launcher changes for the whole process."""
    old_cwd, old_path = os.getcwd(), list(sys.path)
    _fresh_knio_state()
    try:
        yield
    finally:
        if knt._backend is not None:
            knt._backend.close()  # sinks a failed node left open
        _fresh_knio_state()
        install_test_backend()
        os.chdir(old_cwd)
        sys.path[:] = old_path
        if getattr(sys, "tracebacklimit", 0) is None:  # closeOutputs sets it to None
            del sys.tracebacklimit


def _write_inputs(port_dir: Path, input_tables, input_objects) -> tuple[list[Path], list[Path]]:
    tables, objects = [], []
    for i, table in enumerate(input_tables):
        tables.append(port_dir / f"in_table_{i}.arrow")
        write_table(table, tables[-1])
    for i, blob in enumerate(input_objects):
        objects.append(port_dir / f"in_object_{i}.pickle")
        objects[-1].write_bytes(blob)
    return tables, objects


def run_script(source: str, *, workflow_dir: str | Path, flow_variables: dict[str, Any],
               input_tables: list[Table] = (), input_objects: list[bytes] = (),
               n_out_tables: int = 0, n_out_images: int = 0, n_out_objects: int = 0,
               name: str = "<Python Script>") -> NodeResult:
    """Execute ``source`` as one Python Script node in this process; outputs or raises."""
    port_dir = new_port_dir()
    tables, objects = _write_inputs(port_dir, input_tables, input_objects)
    with _process_state_restored():
        return _run_on_py4j_thread(
            name, source=source, workflow_dir=Path(workflow_dir).resolve(),
            flow_variables=dict(flow_variables), table_files=tables, object_files=objects,
            n_out_tables=n_out_tables, n_out_images=n_out_images,
            n_out_objects=n_out_objects, port_dir=port_dir, store_root=file_store_root())


# ----------------------------------------------------------------------------- subprocess
def run_script_isolated(source: str, *, workflow_dir: str | Path, flow_variables: dict[str, Any],
                        input_tables: list[Table] = (), input_objects: list[bytes] = (),
                        n_out_tables: int = 0, n_out_images: int = 0, n_out_objects: int = 0,
                        name: str = "<Python Script>", timeout: float = 300) -> NodeResult:
    """Like :func:`run_script`, in a fresh Python process (the real KNIME process boundary)."""
    port_dir = new_port_dir("isolated")
    tables, objects = _write_inputs(port_dir, input_tables, input_objects)
    (port_dir / "script.py").write_text(source, encoding="utf-8")
    (port_dir / "job.json").write_text(json.dumps({
        "workflow_dir": str(Path(workflow_dir).resolve()), "flow_variables": flow_variables,
        "table_files": [str(p) for p in tables], "object_files": [str(p) for p in objects],
        "n_out_tables": n_out_tables, "n_out_images": n_out_images,
        "n_out_objects": n_out_objects, "name": name,
        "store_root": str(file_store_root())}))  # file-store keys stay valid across nodes
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in knime_java.KNIME_SOURCES)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(port_dir)],
                          cwd=port_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    status_file = port_dir / "status.json"
    if not status_file.is_file():
        raise AssertionError(f"node process crashed (exit {proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
    status = json.loads(status_file.read_text())
    if status["error"]:
        raise NodeExecutionError(status["error"])
    return NodeResult(
        tables=[read_table(p) for p in status["table_files"]],
        table_files=[Path(p) for p in status["table_files"]],
        images=[(port_dir / f"image_{i}").read_bytes() for i in range(n_out_images)],
        image_kinds=status["image_kinds"],
        objects=[(port_dir / f"object_{i}.pickle").read_bytes() for i in range(n_out_objects)],
        object_summaries=status["object_summaries"],
        flow_variables=status["flow_variables"], stdout=status["stdout"])


def _child_main(port_dir: Path) -> None:
    """The fresh node process: one session, then a status file for the parent."""
    spec = json.loads((port_dir / "job.json").read_text())
    status: dict[str, Any] = {"error": None}
    try:
        result = _run_on_py4j_thread(
            spec["name"], source=(port_dir / "script.py").read_text(encoding="utf-8"),
            workflow_dir=Path(spec["workflow_dir"]), flow_variables=spec["flow_variables"],
            table_files=[Path(p) for p in spec["table_files"]],
            object_files=[Path(p) for p in spec["object_files"]],
            n_out_tables=spec["n_out_tables"], n_out_images=spec["n_out_images"],
            n_out_objects=spec["n_out_objects"], port_dir=port_dir,
            store_root=Path(spec["store_root"]))
    except NodeExecutionError as exc:
        status["error"] = str(exc)
    else:
        status.update(table_files=[str(p) for p in result.table_files],
                      image_kinds=result.image_kinds, object_summaries=result.object_summaries,
                      flow_variables=result.flow_variables, stdout=result.stdout)
    (port_dir / "status.json").write_text(json.dumps(status))


if __name__ == "__main__":
    _child_main(Path(sys.argv[1]))
