"""What KNIME 5.5's batch executor does with ``-workflow.variable`` and ``-option``, and what a
component's Configuration nodes push: the Java side the workflow tests stand in for.

TEST-ONLY. Rules from knime-core ``BatchExecutor.java`` at analytics-platform/5.5.3
(org.knime.core/src/eclipse/org/knime/core/node/workflow/): ``parseConfigFromArguments``
splits each argument once at ``=``; ``-workflow.variable`` is tokenised with quotes
(``splitWorkflowVariableArg``: ``"`` and ``'`` quote, ``\\`` escapes, ``,`` delimits) into
exactly name, value, type (``createWorkflowVariable``: String | int | double); ``-option`` is cut
by ``splitOption`` at the first comma (node id path, ``/``-separated integers), the second comma
(the option's name, a ``/``-separated path inside the node's ``model``) and the LAST comma (the
type; the value between may hold commas and is taken verbatim, quotes included);
``setNodeOptions`` walks the id path only through metanodes (``cont instanceof WorkflowManager``:
a component is not one, so ``9/3`` never reaches inside component 9 and is only logged as "No
node with id ... found"), reads the node's settings, steps into the existing sub-configs of the
name's path (a missing one fails the run) and adds the value with the type's parser
(``Integer.parseInt``, ``Double.parseDouble``, ``Boolean.parseBoolean``, ...), then loads the
settings into the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class BatchArgumentError(ValueError):
    """BatchExecutor refuses the argument (exit code 2, "Couldn't parse ... argument")."""


@dataclass(frozen=True)
class Option:
    node_ids: tuple[int, ...]
    name: str
    value: str
    type: str


def split_variable_arg(arg: str) -> list[str]:
    """``splitWorkflowVariableArg``: comma-separated tokens, with "..." / '...' quoting."""
    tokens, current, quote, pending = [], [], None, False
    chars = iter(arg)
    for ch in chars:
        if quote:
            if ch == "\\":
                current.append(next(chars, ""))
            elif ch == quote:
                quote = None
            else:
                current.append(ch)
        elif ch in "\"'":
            quote, pending = ch, True
        elif ch == ",":
            tokens.append("".join(current))
            current, pending = [], False
        else:
            current.append(ch)
            pending = True
    if current or pending or tokens:
        tokens.append("".join(current))
    return tokens


def split_option(arg: str) -> tuple[str, str, str, str]:
    """``splitOption``: id path, name, value (may contain commas), type."""
    first = arg.find(",")
    second = arg.find(",", first + 1)
    last = arg.rfind(",")
    if first < 0 or second < 0 or last == second:  # substring(0, -1): IndexOutOfBounds
        raise BatchArgumentError(f"Couldn't parse -option argument: {arg}")
    return arg[:first], arg[first + 1:second], arg[second + 1:last], arg[last + 1:]


_VARIABLE_TYPES = {"String": str, "int": int, "double": float}


def parse_args(args: list[str]) -> tuple[dict[str, Any], list[Option]]:
    """(workflow variables, node options) of a batch command line's ``-workflow.variable`` and
    ``-option`` arguments; every other argument is left to the caller."""
    variables: dict[str, Any] = {}
    options: list[Option] = []
    for arg in args:
        key, sep, rest = arg.partition("=")
        if key == "-workflow.variable":
            parts = split_variable_arg(rest) if sep else []
            if len(parts) != 3 or parts[2] not in _VARIABLE_TYPES:
                raise BatchArgumentError(f"Couldn't parse -workflow.variable argument: {arg}")
            try:
                variables[parts[0]] = _VARIABLE_TYPES[parts[2]](parts[1])
            except ValueError:
                raise BatchArgumentError(f"Couldn't parse -workflow.variable argument: {arg}") \
                    from None
        elif key == "-option":
            ids, name, value, kind = split_option(rest)
            try:
                node_ids = tuple(int(i) for i in ids.split("/"))
            except ValueError:  # Integer.parseInt's NumberFormatException
                raise BatchArgumentError(f"Couldn't parse -option argument: {arg}") from None
            options.append(Option(node_ids, name, value, kind))
    return variables, options


def _java_int(text: str) -> str:
    number = int(text)  # Integer.parseInt: no spaces, no decimal point
    if text.strip() != text or not -2**31 <= number < 2**31:
        raise ValueError(text)
    return str(number)


def _java_double(text: str) -> str:
    return repr(float(text))


_ADD = {"int": ("xint", _java_int), "long": ("xlong", lambda t: str(int(t))),
        "double": ("xdouble", _java_double), "float": ("xdouble", _java_double),
        "boolean": ("xboolean", lambda t: "true" if t.lower() == "true" else "false"),
        "String": ("xstring", str)}


def apply_option(settings_by_id: dict[int, dict], is_metanode: dict[int, bool],
                 option: Option) -> bool:
    """``setNodeOptions`` for one option on top-level nodes' parsed settings.xml (mutated in
    place). False when no node is reached (KNIME only logs a warning)."""
    if len(option.node_ids) > 1 and not is_metanode.get(option.node_ids[0], False):
        return False  # the path continues only through a metanode (a WorkflowManager)
    settings = settings_by_id.get(option.node_ids[0])
    if settings is None or len(option.node_ids) > 1:
        return False
    if option.type not in _ADD:
        raise BatchArgumentError(f"Unknown option type for {option.name}: {option.type}")
    *path, name = option.name.split("/")
    model = settings["model"]
    for step in path:
        if not isinstance(model.get(step), dict):
            raise BatchArgumentError(f"InvalidSettingsException: no config for key {step!r}")
        model = model[step]
    xtype, parse = _ADD[option.type]
    model[name] = (xtype, parse(option.value))
    return True


# ----------------------------------------------------------------------------- Configuration nodes
CONFIGURATION_FACTORIES = {
    "org.knime.js.base.node.configuration.input.integer.IntegerDialogNodeFactory": "integer",
    "org.knime.js.base.node.configuration.input.dbl.DoubleDialogNodeFactory": "double",
    "org.knime.js.base.node.configuration.input.bool.BooleanDialogNodeFactory": "boolean",
    "org.knime.js.base.node.configuration.input.string.StringDialogNodeFactory": "string",
    "org.knime.js.base.node.configuration.selection.single.SingleSelectionDialogNodeFactory":
        "variable_value",
}


class DialogValueError(ValueError):
    """The Configuration node refuses its value (KNIME fails the component with it)."""


def configuration_push(settings: dict, component_model: dict, node_id: int) -> dict[str, Any]:
    """The flow variables a Configuration node inside a component pushes: the component's
    dialog value ``<parameterName>-<id>`` when there is one, else the node's default
    (SubNodeContainer.loadModelSettingsIntoDialogNodes), checked as the node checks it
    (bounds, choices), typed as knime-js-base pushes it: int, float, str, a boolean (or 0 / 1
    with ``pushIntVar``), and for a single selection also ``<name> (index)``."""
    key = CONFIGURATION_FACTORIES[settings["factory"][1]]
    model = settings["model"]
    name = model["flowVariableName"][1]
    holder = component_model.get(f"{model['parameterName'][1]}-{node_id}", model["defaultValue"])
    if key == "variable_value":
        array = holder[key]
        chosen = array["0"][1] if int(array["array-size"][1]) else None
        choices = model["possible_choices"]
        options = [choices[str(i)][1] for i in range(int(choices["array-size"][1]))]
        if chosen not in options:
            raise DialogValueError(f"{chosen!r} is not one of {options} for {name}")
        return {name: chosen, f"{name} (index)": options.index(chosen)}
    raw = holder[key][1]
    if key == "boolean":
        flag = raw == "true"
        return {name: int(flag) if model.get("pushIntVar", ("", "true"))[1] == "true" else flag}
    if key == "string":
        return {name: raw}
    number = int(raw) if key == "integer" else float(raw)
    cast = int if key == "integer" else float
    if model["useMin"][1] == "true" and number < cast(model["min"][1]):
        raise DialogValueError(f"{name}={number} is below the minimum {model['min'][1]}")
    if model["useMax"][1] == "true" and number > cast(model["max"][1]):
        raise DialogValueError(f"{name}={number} is above the maximum {model['max'][1]}")
    return {name: number}
