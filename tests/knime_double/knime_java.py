"""The Java end of KNIME's Python Script node, for tests: only what KNIME's Java side does.

TEST-ONLY, our own code. KNIME's real Python side (5.5.3) is imported from
``../shared/knime/python``, a cache or a pinned download (``knime_sources``; GPL, never copied
here): this module puts its plugin folders on ``sys.path`` the way KNIME builds the node's
PYTHONPATH, and plays the JVM that KNIME's Python code talks to through py4j.

The JVM is stubbed, not run. KNIME's own unit tests replace ``knime._arrow._backend.convert_schema``
by an identity; we keep the real ``convert_schema`` and give it a JVM namespace that returns plain
spec names, and we give py4j's real client classes (``JavaClass``, ``JavaMap``, the auto-convert
converters) a gateway client that answers the few ``java.util`` commands they send. Every argument
Python sends is parsed the way py4j's Java ``Protocol.getObject`` parses it, so a value that py4j
encodes but Java cannot read (numpy 2's ``repr(np.float64(3.5))`` is ``np.float64(3.5)``) fails
here as it fails in KNIME.

Java also registers KNIME's value factories in the Python process at session start (here: the PNG
image type only, see ``PYTHON_VALUE_FACTORIES``) and hands Python a file-store handler
(``knime_ports.FileStores``).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import knime_sources
import py4j.java_collections  # noqa: F401  (registers py4j's auto-convert converters)
from py4j.java_gateway import PythonProxyPool
from py4j.protocol import INPUT_CONVERTER, escape_new_line, unescape_new_line

# The plugin folders KNIME puts on the Python Script node's PYTHONPATH (PythonScriptingSession:
# python3, python3.arrow, python3.views, the value-factory modules; the launcher's own folder).
PLUGINS = ("org.knime.python3", "org.knime.python3.arrow", "org.knime.python3.arrow.types",
           "org.knime.python3.views", "org.knime.python3.scripting.nodes")


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def _knime_python() -> Path:
    """KNIME 5.5.3's knime-python folder (knime_sources: shared, cache or download).

    Inside a local pytest run a test module that needs it is skipped, with the reason; under
    CI, and outside pytest, the import fails with that reason.
    """
    try:
        root = knime_sources.locate()
    except knime_sources.SourcesUnavailable as exc:
        if "pytest" in sys.modules and not _on_ci():
            import pytest

            pytest.skip(str(exc), allow_module_level=True)
        raise
    # Fresh node processes started by the tests take the folder found here, unsearched.
    os.environ[knime_sources.ENV_SOURCES] = str(root)
    return root / "knime-python-5.5.3"


KNIME_PYTHON = _knime_python()
KNIME_SOURCES = [KNIME_PYTHON / plugin / "src" / "main" / "python" for plugin in PLUGINS]


def use_knime_sources() -> None:
    """Put KNIME's plugin folders first on sys.path (idempotent); fail clearly if missing."""
    missing = [str(p) for p in KNIME_SOURCES if not p.is_dir()]
    if not KNIME_PYTHON.is_dir():
        missing = [str(KNIME_PYTHON)]
    if missing:
        raise ImportError("KNIME 5.5.3's Python sources are missing: " + ", ".join(missing)
                          + ". " + knime_sources.FIX)
    for path in reversed(KNIME_SOURCES):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


use_knime_sources()  # importing this module is enough to import KNIME's modules


class JavaFailure(BaseException):  # noqa: N818
    """Java failed while Python waited for its answer; the node fails on the Java side.

    A BaseException on purpose: in KNIME the Python thread gets no exception at all (it waits on
    the socket until KNIME kills the process), so the launcher's ``except Exception`` must not
    see one either.
    """


class JavaError(Exception):
    """An exception in KNIME's Java code after Python answered: the node fails with its text."""


@dataclass
class JavaObject:
    """A value as the JVM holds it: its Java class name and the Python equivalent."""

    cls: str
    value: Any


# ----------------------------------------------------------------------------- parsing (Java)
_JAVA_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?)")


def _number_format(text: str) -> JavaFailure:
    return JavaFailure(f'java.lang.NumberFormatException: For input string: "{text}"')


def _java_int(text: str, bits: int) -> int:
    if not re.fullmatch(r"[+-]?\d+", text) or not -(2 ** (bits - 1)) <= int(text) < 2 ** (bits - 1):
        raise _number_format(text)
    return int(text)


def _java_double(text: str) -> float:
    """Double.parseDouble (decimal forms; Java trims blanks; hex floats are not needed here)."""
    trimmed = text.strip(" \t\n\r\x0b\x0c")
    if not _JAVA_DOUBLE.fullmatch(trimmed):
        raise _number_format(text)
    return float(trimmed.rstrip("fFdD").replace("Infinity", "inf"))


# ----------------------------------------------------------------------------- py4j's JVM end
_COLLECTIONS = {"java.util.LinkedHashMap": ("LinkedHashMap", "a"),
                "java.util.HashMap": ("HashMap", "a"),
                "java.util.ArrayList": ("ArrayList", "l"),
                "java.util.HashSet": ("HashSet", "h")}
_RETURN_TYPE = {cls: code for cls, code in _COLLECTIONS.values()}


class _GatewayClient:
    """Answers py4j commands for java.util collections, as the JVM's gateway would."""

    address, port = "127.0.0.1", 0

    def __init__(self) -> None:
        self.converters = INPUT_CONVERTER  # KNIME connects with auto_convert=True
        self.gateway_property = SimpleNamespace(pool=PythonProxyPool(), auto_field=False,
                                                enable_memory_management=False)
        self.objects: dict[str, JavaObject] = {}
        self._ids = itertools.count(1)

    def garbage_collect_object(self, target_id: str) -> None:
        self.objects.pop(target_id, None)

    def send_command(self, command: str) -> str:
        name, *lines = command.split("\n")
        if name == "m":  # memory: release a reference
            self.garbage_collect_object(lines[1])
            return "yv"
        if name == "i":  # constructor
            if lines[0] not in _COLLECTIONS:
                return "xsthe test's JVM cannot construct " + lines[0]
            cls, _ = _COLLECTIONS[lines[0]]
            self._arguments(lines[1:])
            return self._answer(JavaObject(cls, [] if cls in ("ArrayList", "HashSet") else {}))
        if name == "c":  # method call
            target, method = self.objects[lines[0]], lines[1]
            return self._answer(self._call(target, method, self._arguments(lines[2:])))
        return "xsthe test's JVM does not handle py4j command " + repr(name)

    def _arguments(self, lines: list[str]) -> list[JavaObject | None]:
        return [self.java_value(part) for part in lines[:lines.index("e")]]

    def java_value(self, part: str) -> JavaObject | None:
        """py4j's Java ``Protocol.getObject``: one encoded argument as the JVM reads it."""
        kind, text = part[:1], part[1:]
        if kind == "n":
            return None
        if kind == "r":
            return self.objects[text]
        readers = {"b": ("Boolean", lambda t: t.lower() == "true"),
                   "i": ("Integer", lambda t: _java_int(t, 32)),
                   "L": ("Long", lambda t: _java_int(t, 64)),
                   "d": ("Double", _java_double),
                   "s": ("String", unescape_new_line),
                   "j": ("byte[]", base64.standard_b64decode),
                   "D": ("BigDecimal", str),
                   "f": ("PythonProxy", str)}
        if kind not in readers:
            raise JavaFailure(f"py4j.Py4JException: unknown argument type {part!r}")
        cls, read = readers[kind]
        return JavaObject(cls, read(text))

    @staticmethod
    def _call(target: JavaObject, method: str, args: list) -> Any:
        data = target.value
        if method == "put" and isinstance(data, dict):
            key = args[0].value if args[0] is not None else None
            old, data[key] = data.get(key), args[1]
            return old
        if method == "add" and isinstance(data, list):
            if target.cls == "HashSet" and args[0] in data:
                return JavaObject("Boolean", False)
            data.append(args[0])
            return JavaObject("Boolean", True)
        if method == "size":
            return JavaObject("Integer", len(data))
        raise JavaFailure(f"py4j.Py4JException: the test's JVM has no {target.cls}.{method}")

    def _answer(self, value: JavaObject | None) -> str:
        """The reply to Python: 'y' + py4j type code + value."""
        if value is None:
            return "yn"
        if value.cls in _RETURN_TYPE:
            target_id = f"o{next(self._ids)}"
            self.objects[target_id] = value
            return "y" + _RETURN_TYPE[value.cls] + target_id
        if value.cls == "Boolean":
            return "yb" + ("true" if value.value else "false")
        codes = {"Integer": "i", "Long": "L", "Double": "d"}
        if value.cls in codes:
            return "y" + codes[value.cls] + repr(value.value)
        return "ys" + escape_new_line(str(value.value))


class _Jvm:
    """``gateway().jvm.…`` for the real ``convert_schema``: Java's data specs as plain names."""

    _SPECS = {"booleanSpec", "byteSpec", "doubleSpec", "floatSpec", "intSpec", "longSpec",
              "varBinarySpec", "voidSpec", "stringSpec"}

    def __init__(self, path: tuple[str, ...] = ()) -> None:
        self._path = path

    def __getattr__(self, name: str) -> _Jvm:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Jvm((*self._path, name))

    def __call__(self, *args: Any) -> Any:
        name = self._path[-1]
        if name == "PythonColumnarSchemaBuilder":
            return _SchemaBuilder()
        if name in self._SPECS:
            return name.removesuffix("Spec")
        if name == "StructDataSpec":
            return ("struct", list(args[0]))
        if name == "ListDataSpec":
            return ("list", args[0])
        raise NotImplementedError("the test's JVM has no " + ".".join(self._path))


class _SchemaBuilder:
    """Java's PythonColumnarSchemaBuilder: collects one data spec per column."""

    def __init__(self) -> None:
        self.columns: list[Any] = []

    def addColumn(self, spec: Any) -> None:  # noqa: N802  (Java's name)
        self.columns.append(spec)

    def build(self) -> list[Any]:
        return list(self.columns)


class FakeJvm:
    """What ``knime._backend._gateway.client_server`` is in a test: the JVM end of py4j."""

    def __init__(self) -> None:
        self._gateway_client = _GatewayClient()
        self.jvm = _Jvm()

    def new_array(self, java_class: Any, size: int) -> list:
        return [None] * size



# ----------------------------------------------------------------------------- value factories
PNG_VALUE_FACTORY = "org.knime.core.data.image.png.PNGImageValueFactory"
PNG_LOGICAL_TYPE = json.dumps({"value_factory_class": PNG_VALUE_FACTORY}, separators=(",", ":"))

# The storage of KNIME's PNG image cells as Java describes it to Python. Java's side, at tag
# analytics-platform/5.5.3 of knime-core: PNGImageValueFactory extends
# TableOrFileStoreValueFactory, whose spec (AbstractFileStoreValueFactory.getSpec) is a struct of
# the file-store keys (StringDataSpec) and the table data (VarBinaryDataSpec). The JSON form is
# what the Python side parses (knime.api.schema._dict_to_knime_type,
# knime._arrow._types.data_spec_to_arrow); the traits follow KNIME's own testing_utility.py.
_PNG_DATA_SPEC = json.dumps({"type": "struct", "inner_types": ["string", "variable_width_binary"]})
_PNG_DATA_TRAITS = json.dumps({
    "type": "struct", "traits": {"logical_type": PNG_LOGICAL_TYPE},
    "inner": [{"type": "simple", "traits": {}}, {"type": "simple", "traits": {}}]})

# registerPythonValueFactory's arguments, in the order of org.knime.python3.arrow.types/plugin.xml
# (module knime.types.builtin): python module, factory class, data type name (Java's: the name
# PNGImageValue's UtilityFactory gives, "Image (PNG)"), data spec, data traits, Python value
# type, is default.
# Only the PNG image type: the other types of plugin.xml are not modelled here.
PYTHON_VALUE_FACTORIES = [
    ("knime.types.builtin", "PNGImageValueFactory", "Image (PNG)", _PNG_DATA_SPEC,
     _PNG_DATA_TRAITS, "PIL.Image.Image", True),
    ("knime.types.builtin", "PNGImageValueFactory", "Image (PNG)", _PNG_DATA_SPEC,
     _PNG_DATA_TRAITS, "PIL.PngImagePlugin.PngImageFile", False),  # images read back from KNIME
]


def register_value_factories(register: Callable[..., None]) -> None:
    """What Java does at session start: one registerPythonValueFactory call per entry (the
    default representation first, since a non-default one looks its default up)."""
    for entry in PYTHON_VALUE_FACTORIES:
        register(*entry)


# ----------------------------------------------------------------------------- flow variables
_FLOW_VARIABLE_CLASSES = {"Boolean", "Double", "Integer", "Long", "String"}  # and arrays of them


def returned_flow_variables(java_map: JavaObject) -> dict[str, Any]:
    """FlowVariableUtils.convertFromMap: the variables KNIME makes of the map Python returned.

    Lists become arrays of their first element's class (mixed classes: dropped, as Java's
    ArrayStoreException is caught); empty lists, nulls, classes with no KNIME variable type
    (maps, sets, nested lists, bytes) and names starting with ``knime.`` are dropped.
    """
    out: dict[str, Any] = {}
    for name, value in java_map.value.items():
        if value is not None and value.cls == "ArrayList":
            items = value.value
            if not items:
                continue
            if items[0] is None:  # listValue.get(0).getClass()
                raise JavaError(f"java.lang.NullPointerException (flow variable '{name}' is a "
                                "list that starts with None)")
            if any(v is not None and v.cls != items[0].cls for v in items):
                continue
            value = JavaObject(items[0].cls + "[]",
                               [None if v is None else v.value for v in items])
        if value is None or value.cls.removesuffix("[]") not in _FLOW_VARIABLE_CLASSES:
            continue
        if not name.startswith("knime."):
            out[name] = value.value
    return out


def pushed_flow_variables(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """addNewFlowVariables: only variables that are new or differ (in type or value) are pushed."""
    def same(a: Any, b: Any) -> bool:
        return type(a) is type(b) and a == b and (
            not isinstance(a, list) or [type(x) for x in a] == [type(x) for x in b])

    return {k: v for k, v in after.items() if k not in before or not same(before[k], v)}
