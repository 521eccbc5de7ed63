"""How data crosses a KNIME port in the tests: the one place that writes and reads port files.

TEST-ONLY. A table goes through KNIME 5.5.3's real conversion (``knime._arrow``): written with the
real ``ArrowDataSink`` into an Arrow IPC file, read back with the real ``ArrowDataSource`` as the
``ArrowSourceTable`` a node's ``knio.input_tables[i]`` is. Our code plays only the Java objects
those classes talk to (``PythonArrowDataSink`` / ``PythonArrowDataSource``), as KNIME's own unit
tests do (``knime-python-5.5.3-tests/test_arrow_backend.py``). Pickled objects cross as files, as
``PickledObjectFileStorePortObject`` does. Image cells are file stores (``FileStores``), files
next to the port files.

``write_table`` / ``read_table`` are the helpers a benchmark may time: they are exactly what a
KNIME table port costs on the Python side (Java's own reading and writing not included).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import itertools
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import knime_java
import pyarrow as pa

knime_java.use_knime_sources()  # before any knime import

import knime._arrow._backend as kab  # noqa: E402
import knime._arrow._table as kat  # noqa: E402
import knime._backend._gateway as kg  # noqa: E402
import knime.api.table as knt  # noqa: E402
import knime.api.types as kty  # noqa: E402

ROW_ID = "<RowID>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STORE = Path(tempfile.mkdtemp(prefix="knime-ports-"))  # port files of this test process
atexit.register(shutil.rmtree, _STORE, True)
_counter = itertools.count()


def file_store_root() -> Path:
    """The folder all port folders of this test process sit in; file-store keys resolve in it."""
    return _STORE


def new_port_dir(prefix: str = "node") -> Path:
    """A fresh folder for one node's port files; it lives until the test process ends, because
    tables read from it are memory-mapped (``ArrowDataSource``)."""
    path = _STORE / f"{prefix}-{next(_counter)}"
    path.mkdir()
    return path


class FileStores:
    """Java's file-store handler (what ``knime.api.table._backend.file_store_handler`` is).

    KNIME writes each PNG image cell to its own file store: ``create_file_store()`` gives Python a
    new file (absolute path) and its key, which goes into the table; a reader turns the key back
    into a path with ``file_store_key_to_absolute_path``. In KNIME keys stay valid across the
    nodes of a workflow. Here one root folder per test process plays the workflow (all port
    folders live in it, see :func:`file_store_root`), a node's file stores are files in
    ``<root>/<its port folder>/filestores/``, and a key is ``<port folder>:<number>``: opaque
    (not a path, so code that opens a key instead of resolving it fails as in KNIME) yet
    resolvable from the test process and from every node process, which are given the root.
    """

    def __init__(self, root: str | Path, owner: str) -> None:
        self.root, self.owner = Path(root), owner
        if Path(owner).name != owner or not (self.root / owner).is_dir():
            raise ValueError(f"{owner!r} is not a port folder in {self.root}")
        self._ids = itertools.count()

    def create_file_store(self) -> tuple[str, str]:
        folder = self.root / self.owner / "filestores"
        folder.mkdir(exist_ok=True)
        number = next(self._ids)
        path = folder / str(number)
        path.touch(exist_ok=False)  # never hand out a file store twice
        return str(path), f"{self.owner}:{number}"

    def file_store_key_to_absolute_path(self, key: str) -> str:
        owner, sep, number = str(key).rpartition(":")
        path = self.root / owner / "filestores" / number
        if not (sep and number.isdigit() and owner and Path(owner).name == owner
                and owner not in (".", "..") and path.is_file()):
            raise knime_java.JavaError(f"No file store for key {key!r}")
        return str(path)


class JavaSink:
    """Java's PythonArrowDataSink as the real ``ArrowDataSink`` uses it: a file to write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.columnar_schema = None
        self.batch_offsets: list[int] = []
        self.final_size: int | None = None

    def getIdentifier(self) -> str:  # noqa: N802  (Java's method names)
        return "org.knime.python3.arrow"

    def getAbsolutePath(self) -> str:  # noqa: N802
        return str(self.path)

    def setColumnarSchema(self, schema) -> None:  # noqa: N802
        self.columnar_schema = schema

    def reportBatchWritten(self, offset: int) -> None:  # noqa: N802
        self.batch_offsets.append(offset)

    def setFinalSize(self, size: int) -> None:  # noqa: N802
        self.final_size = size


class JavaSource:
    """Java's PythonArrowDataSource for a finished Arrow file (footer written, names inside)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def getIdentifier(self) -> str:  # noqa: N802
        return "org.knime.python3.arrow"

    def getAbsolutePath(self) -> str:  # noqa: N802
        return str(self.path)

    def isFooterWritten(self) -> bool:  # noqa: N802
        return True

    def hasColumnNames(self) -> bool:  # noqa: N802
        return False


class PickledObjectSource:
    """Java's PickledObjectDataSource: the pickle file of an object port."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def getIdentifier(self) -> str:  # noqa: N802
        return "org.knime.python3.pickledobject"

    def getAbsolutePath(self) -> str:  # noqa: N802
        return str(self.path)


def write_table(table: knt.Table, path: str | Path) -> None:
    """Write ``table`` (a ``knime.api.table.Table``) to ``path`` as an Arrow IPC file, the way
    KNIME's Python side writes an output port (real ``ArrowDataSink``, batches split as in
    ``ArrowTable._write_to_sink``)."""
    if isinstance(table, knt._TabularView):
        table = table.get()
    if not isinstance(table, kat.ArrowTable):
        raise TypeError(f"write_table needs a knime.api.table.Table, got {type(table)}")
    with kab.ArrowDataSink(JavaSink(path)) as sink:
        table._write_to_sink(sink)


def read_table(path: str | Path) -> knt.Table:
    """Read an Arrow IPC file written by :func:`write_table` (or by a node's sink) as the table a
    node receives on an input port: KNIME's real ``ArrowSourceTable`` over ``ArrowDataSource``.
    The file is memory-mapped and must stay in place while the table is used."""
    return kat.ArrowSourceTable(kab.ArrowDataSource(JavaSource(path)))


def check_row_ids(path: str | Path, port: int) -> None:
    """Java's RowKeyChecker on a written output table: RowIDs (column 0) must be unique."""
    seen: set[str] = set()
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            column = reader.get_batch(i).column(0)
            if isinstance(column, pa.ExtensionArray):
                column = column.storage
            for key in column.to_pylist():
                if key in seen:
                    raise RowKeyError(f'Row key checking: Encountered duplicate row ID "{key}" '
                                      f"in output table {port}.")
                seen.add(key)


class RowKeyError(knime_java.JavaError):
    """Java's IOException from SinkManager.checkRowKeys."""


def image_kind(data: bytes) -> str | None:
    """PythonIOUtils.readImage: 'svg', 'png' or 'other' if Java can read the image, None if the
    port silently becomes inactive."""
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


def _test_process_sink() -> kab.ArrowDataSink:
    return kab.ArrowDataSink(JavaSink(_STORE / f"sink-{next(_counter)}.arrow"))


_TEST_PROCESS_FILE_STORES = FileStores(_STORE, new_port_dir("test-process").name)


def install_test_backend() -> None:
    """Let the test process itself use Table.from_pandas / BatchOutputTable / to_pandas (KNIME
    sets this backend in setupIO and removes it in closeOutputs), with the stubbed JVM for the
    schema, KNIME's value factories registered as Java registers them, and a file-store
    handler (image cells are file stores: written by from_pandas, read by to_pandas)."""
    if not isinstance(kg.client_server, knime_java.FakeJvm):
        kg.client_server = knime_java.FakeJvm()
    knime_java.register_value_factories(kty.register_python_value_factory)
    knt._backend = kat._ArrowBackend(_test_process_sink)
    knt._backend.file_store_handler = _TEST_PROCESS_FILE_STORES


install_test_backend()
