"""KNIME components: a piece of workflow with its own dialog, made of Configuration nodes.

A component (``node_type`` SubNode) is a folder with its own ``settings.xml``, ``workflow.knime``
and ``component-metadata.xml``; inside, a Component Input (id 1), a Component Output (id 2), the
nodes it wraps and one Configuration node per dialog field. The fields come from the project's
settings table (``vae_core.config.Setting`` rows): typed, with default, range or choices and a
one-line description, so a new row of the table is a new field with no other edit.

Key trees, each checked against KNIME 5.5-saved files (docs/KNIME.md "The Train VAE component"):
Configuration nodes as knime-js-base writes them (``org.knime.js.quickforms``, 5.5.3 test
workflows ``*ConfigurationComponentDialogTest``), Component Input/Output as knime-core writes them
(``AbstractVirtualSubNodeConfiguration``), the component's own settings as
``FileSubNodeContainerPersistor.save`` writes them, its description and port texts in
``component-metadata.xml`` (KNIME 5.1+, ``ComponentMetadata.toXMLDocument``).

The dialog's values live in the component's ``model``: ``<parameterName>-<node id>`` holds the
value of each field (``SubNodeContainer.getDialogNodeParameterName`` / ``performSaveModelSettingsTo``).
That is also what the batch executor's ``-option`` edits (:func:`option_key`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vae_core.config import Setting

from .knime_xml import Config, array, boolean, config, double, integer, string, xml_attr

INPUT, OUTPUT = 1, 2  # the ids KNIME gives a new component's Component Input and Output
PORT_CLASSES = {"table": "org.knime.core.node.BufferedDataTable",
                "image": "org.knime.core.node.port.image.ImagePortObject",
                "object": "org.knime.python2.port.PickledObjectFileStorePortObject"}
FLOW = "flow"  # every node's hidden flow-variable port (index 0), in and out


@dataclass(frozen=True)
class ComponentPort:
    kind: str  # table | image | object
    name: str
    description: str


@dataclass(frozen=True)
class Component:
    """A component wrapping ``nodes``; ``links`` connect them with each other and with
    :data:`INPUT` / :data:`OUTPUT`, whose ports are the component's ports (named ``"<kind> <n>"``
    in declaration order). Every row of ``settings`` becomes a Configuration node (ids from
    ``first_field_id``) whose flow variables reach every wrapped node."""

    id: int
    label: str  # the component's name
    position: tuple[int, int]
    description: str
    settings: tuple[Setting, ...]
    nodes: tuple
    links: tuple
    out_ports: tuple[ComponentPort, ...]
    in_ports: tuple[ComponentPort, ...] = ()
    first_field_id: int = 10


@dataclass(frozen=True)
class _ComponentEnd:
    id: int
    ports: tuple[ComponentPort, ...]
    position: tuple[int, int]
    label: str = ""


@dataclass(frozen=True)
class ComponentInput(_ComponentEnd):
    """The node inside a component that hands the component's in ports to its nodes."""


@dataclass(frozen=True)
class ComponentOutput(_ComponentEnd):
    """The node inside a component that hands results to the component's out ports."""


@dataclass(frozen=True)
class ConfigurationNode:
    """One dialog field: the Configuration node of a settings-table row."""

    id: int
    setting: Setting
    position: tuple[int, int]

    @property
    def label(self) -> str:
        return self.setting.name


def port_names(ports: tuple[ComponentPort, ...]) -> list[str]:
    """``"<kind> <n>"`` per port, n counted within the kind, in declaration order."""
    return [f"{p.kind} {sum(q.kind == p.kind for q in ports[:i]) + 1}"
            for i, p in enumerate(ports)]


# ----------------------------------------------------------------------------- dialog fields
@dataclass(frozen=True)
class FieldKind:
    node_name: str
    factory: str
    value_key: str  # the key of the value in the dialog value (and the default value)
    entry: Any  # the knime_xml builder of the value's entry
    option_type: str  # the -option type BatchExecutor parses the value with


_QUICKFORMS = "org.knime.js.base.node.configuration."
INTEGER = FieldKind("Integer Configuration", _QUICKFORMS + "input.integer.IntegerDialogNodeFactory",
                    "integer", integer, "int")
DOUBLE = FieldKind("Double Configuration", _QUICKFORMS + "input.dbl.DoubleDialogNodeFactory",
                   "double", double, "double")
BOOLEAN = FieldKind("Boolean Configuration", _QUICKFORMS + "input.bool.BooleanDialogNodeFactory",
                    "boolean", boolean, "boolean")
STRING = FieldKind("String Configuration", _QUICKFORMS + "input.string.StringDialogNodeFactory",
                   "string", string, "String")
SELECTION = FieldKind("Single Selection Configuration",
                      _QUICKFORMS + "selection.single.SingleSelectionDialogNodeFactory",
                      "variable_value", None, "String")


def field_kind(setting: Setting) -> FieldKind:
    if setting.choices:
        return SELECTION
    return {int: INTEGER, float: DOUBLE, bool: BOOLEAN}.get(setting.type, STRING)


def field_default(setting: Setting) -> int | float | bool | str:
    """The field's value when nobody changed it: the table's default (an optional count's "no
    limit" is 0)."""
    return 0 if setting.default is None else setting.default


def field_label(setting: Setting) -> str:
    return setting.name.replace("_", " ").capitalize()


def field_description(setting: Setting) -> str:
    """One line: the table's help and what a valid value is."""
    if setting.choices:
        rule = "one of " + ", ".join(setting.choices)
    elif setting.optional:
        rule = "0 = no limit, else " + setting.expected().removeprefix("empty or ")
    elif setting.type is bool:
        rule = "ticked = yes"
    else:
        rule = setting.expected()
    return f"{setting.help} ({rule})"


def parameter_name(node: ConfigurationNode) -> str:
    """The dialog value's key in the component's model (``<parameterName>-<node id>``)."""
    return f"{node.setting.name}-{node.id}"


def option_key(node: ConfigurationNode) -> tuple[str, str]:
    """(``-option`` name, type) that sets this field in a batch run: the path inside the
    component's model, '/'-separated as BatchExecutor.setNodeOptions splits it. A selection's
    value is a one-element string array: its element ``0`` is set."""
    kind = field_kind(node.setting)
    path = kind.value_key + ("/0" if kind is SELECTION else "")
    return f"{parameter_name(node)}/{path}", kind.option_type


def _value(setting: Setting, key: str, value: Any) -> Config:
    kind = field_kind(setting)
    if kind is SELECTION:
        return config(key, array(kind.value_key, "xstring", [str(value)]))
    return config(key, kind.entry(kind.value_key, value))


def _bounds(setting: Setting) -> list:
    kind = field_kind(setting)
    if kind not in (INTEGER, DOUBLE):
        return []
    low = 0 if setting.optional else next(
        (b for b in (setting.minimum, setting.above) if b is not None), None)
    high = setting.below
    return [boolean("useMin", low is not None), boolean("useMax", high is not None),
            kind.entry("min", 0 if low is None else low),
            kind.entry("max", 100 if high is None else high)]


def field_model(setting: Setting) -> Config:
    """The Configuration node's ``model``, in knime-js-base's key order."""
    kind = field_kind(setting)
    extra: list = _bounds(setting)
    if kind is BOOLEAN:
        extra = [boolean("pushIntVar", False)]  # a boolean flow variable, not 0 / 1
    elif kind is SELECTION:
        extra = [array("possible_choices", "xstring", setting.choices),
                 string("type", "Dropdown"), boolean("limit_number_visible_options", False),
                 integer("number_visible_options", 10)]
    elif kind is STRING:
        extra = [string("regex", ""), string("error_message", ""),
                 string("editorType", "Single-line"), integer("multilineEditorWidth", 40),
                 integer("multilineEditorHeight", 5)]
    return config("model", _value(setting, "defaultValue", field_default(setting)),
                  boolean("hideInDialog", False), string("parameterName", setting.name),
                  string("label", field_label(setting)),
                  string("description", field_description(setting)),
                  boolean("required", True), string("flowVariableName", setting.name), *extra)


def dialog_values(fields: list[ConfigurationNode]) -> Config:
    """The component's ``model``: every field's value (the table's default)."""
    return config("model", *(_value(f.setting, parameter_name(f), field_default(f.setting))
                             for f in fields))


# ----------------------------------------------------------------------------- Input / Output
def _variable_filter() -> Config:
    """Every flow variable passes (nothing excluded, new ones included): the workflow's
    variables reach the wrapped nodes, and the fields' and the nodes' variables leave."""
    return config("variable-filter", string("filter-type", "STANDARD"),
                  array("included_names", "xstring", []), array("excluded_names", "xstring", []),
                  string("enforce_option", "EnforceExclusion"),
                  config("name_pattern", string("pattern", ""), string("type", "Wildcard"),
                         boolean("caseSensitive", True), boolean("excludeMatching", False)))


def in_out_model(node: ComponentInput | ComponentOutput) -> Config:
    last = (string("sub-node-description", "") if isinstance(node, ComponentInput)
            else boolean("allowOutputNodeToCompleteBeforeContent", False))
    return config("model", _variable_filter(), string("variable-prefix", None),
                  array("port-names", "xstring", [p.name for p in node.ports]),
                  array("port-descriptions", "xstring", [p.description for p in node.ports]),
                  last)


def port_types(key: str, ports: tuple[ComponentPort, ...], prefix: str) -> Config:
    """Port types as SubNodeContainer saves them (``inports`` / ``outports`` of the component,
    ``factory_settings`` of Component Input / Output)."""
    return config(key, *(config(f"{prefix}{i}", integer("index", i),
                                config("type", string("object_class", PORT_CLASSES[p.kind])))
                         for i, p in enumerate(ports)))


def component_settings(comp: Component, annotation: Config, fields: list[ConfigurationNode]
                       ) -> Config:
    """The component's own settings.xml (FileSubNodeContainerPersistor.save's keys)."""
    return config(
        "settings.xml", string("node_file", "settings.xml"), config("flow_stack"),
        config("internal_node_subsettings", string("memory_policy", "CacheSmallInMemory")),
        dialog_values(fields), annotation, string("customDescription", None),
        string("state", "CONFIGURED"), string("workflow-file", "workflow.knime"),
        integer("virtual-in-ID", INPUT), port_types("inports", comp.in_ports, "inport_"),
        integer("virtual-out-ID", OUTPUT), port_types("outports", comp.out_ports, "outport_"),
        string("layoutJSON", '{"parentLayoutLegacyMode":false}'),
        string("configurationLayoutJSON", "{}"), boolean("hideInWizard", False),
        string("customCSS", ""))


def metadata_xml(comp: Component, when: str) -> bytes:
    """component-metadata.xml: the description and the port names and texts KNIME shows."""
    def ports(tag: str, group: tuple[ComponentPort, ...]) -> list[str]:
        if not group:
            return [f"    <{tag}/>"]
        return ([f"    <{tag}>"]
                + [f'        <port name="{xml_attr(p.name)}">{_text(p.description)}</port>'
                   for p in group] + [f"    </{tag}>"])
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<component-metadata content-type="text/plain" '
             'xmlns="http://www.knime.org/core/node/workflow/metadata/v1.0">',
             f"    <last-modified>{when}</last-modified>",
             f"    <description>{_text(comp.description)}</description>",
             *ports("in-ports", comp.in_ports), *ports("out-ports", comp.out_ports),
             "</component-metadata>"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------- inner workflow
def fields(comp: Component) -> list[ConfigurationNode]:
    return [ConfigurationNode(comp.first_field_id + i, s, (-100 + 120 * (i % 7), 40 + 100 * (i // 7)))
            for i, s in enumerate(comp.settings)]


def inner_parts(comp: Component, link_type: type) -> tuple[tuple, tuple]:
    """(nodes, links) of the component's own workflow: Input, Output, the fields chained
    through their flow-variable ports (Input -> first field -> ... -> last field -> every
    wrapped node), and the wrapped nodes with their links."""
    chain = fields(comp)
    below = 40 + 100 * ((len(chain) + 6) // 7)
    nodes = (ComponentInput(INPUT, comp.in_ports, (-200, below)),
             ComponentOutput(OUTPUT, comp.out_ports, (700, below)), *chain, *comp.nodes)
    links = []
    previous, port = INPUT, FLOW
    for f in chain:
        links.append(link_type(previous, port, f.id, FLOW))
        previous, port = f.id, "variables 1"
    links += [link_type(previous, port, n.id, FLOW) for n in comp.nodes]
    return nodes, (*links, *comp.links)


def in_out_settings(node: ComponentInput | ComponentOutput, version: str, vendor: str) -> Config:
    """Component Input / Output's settings.xml: KNIME core's virtual nodes (no annotation, not
    deletable, the port types in ``factory_settings``)."""
    is_input = isinstance(node, ComponentInput)
    name = "Component Input" if is_input else "Component Output"
    factory = ("org.knime.core.node.workflow.virtual.subnode.VirtualSubNode"
               f"{'Input' if is_input else 'Output'}NodeFactory")
    n_out = len(node.ports) if is_input else 0
    return config(
        "settings.xml", string("node_file", "settings.xml"), config("flow_stack"),
        config("internal_node_subsettings", string("memory_policy", "CacheSmallInMemory")),
        in_out_model(node), string("customDescription", None), string("state", "CONFIGURED"),
        boolean("isDeletable", False), string("factory", factory), string("node-name", name),
        string("node-bundle-name", "KNIME Core API"),
        string("node-bundle-symbolic-name", "org.knime.core"),
        string("node-bundle-vendor", vendor), string("node-bundle-version", version),
        string("node-feature-name", None), string("node-feature-symbolic-name", None),
        string("node-feature-vendor", None), string("node-feature-version", "0.0.0"),
        string("factory-id-uniquifier", None), port_types("factory_settings", node.ports, "port_"),
        string("name", name), boolean("hasContent", False), boolean("isInactive", False),
        config("ports", *[config(f"port_{i}", integer("index", i),
                                 string("port_dir_location", None))
                          for i in range(1, n_out + 1)]),
        config("filestores", string("file_store_location", None),
               string("file_store_id", None)))
