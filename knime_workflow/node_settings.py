"""What each kind of KNIME node looks like on disk: its port names, its folder name and its
``settings.xml``, with the key structure of KNIME 5.5's own files (see ``build.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import spec
from .component import (
    Component,
    ComponentInput,
    ComponentOutput,
    ConfigurationNode,
    field_kind,
    field_model,
    in_out_settings,
    port_names,
)
from .knime_xml import Config, array, boolean, config, double, integer, string
from .spec import LinePlot, PythonScript, PythonSourceLegacy, ScatterPlot, TableView

BUNDLE_VERSION = "5.5.0"
VENDOR = "KNIME AG, Zurich, Switzerland"

TABLE = "org.knime.core.node.BufferedDataTable"
IMAGE = "org.knime.core.node.port.image.ImagePortObject"
PICKLED = "org.knime.python2.port.PickledObjectFileStorePortObject"
# The id KNIME 5.5 registers for the Python Script node (the older
# ``...scripting.nodes.script...`` id only loads through a class mapper).
PYTHON_SCRIPT_FACTORY = "org.knime.python3.scripting.nodes2.script.PythonScriptNodeFactory"


# ----------------------------------------------------------------------------- ports
def out_ports(node: spec.Node) -> list[str]:
    """Output port names in KNIME order (index 1, 2, ...): tables, then images, then objects;
    a component's in the order it declares them."""
    if isinstance(node, Component):
        return port_names(node.out_ports)
    if isinstance(node, ComponentInput):
        return port_names(node.ports)
    if isinstance(node, ConfigurationNode):
        return ["variables 1"]
    if isinstance(node, PythonScript):
        return ([f"table {i + 1}" for i in range(node.out_tables)]
                + [f"image {i + 1}" for i in range(node.out_images)]
                + [f"object {i + 1}" for i in range(node.out_objects)])
    return ["table 1"] if isinstance(node, PythonSourceLegacy) else []


def in_ports(node: spec.Node) -> list[str]:
    """Input port names in KNIME order: pickled objects first, then tables."""
    if isinstance(node, Component):
        return port_names(node.in_ports)
    if isinstance(node, ComponentOutput):
        return port_names(node.ports)
    if isinstance(node, PythonScript):
        return ([f"object {i + 1}" for i in range(node.in_objects)]
                + [f"table {i + 1}" for i in range(node.in_tables)])
    return ["table 1"] if isinstance(node, ScatterPlot | LinePlot | TableView) else []


# ----------------------------------------------------------------------------- settings.xml
def folder_name(node_name: str, node_id: int) -> str:
    """KNIME's node folder name: every char outside [a-zA-Z0-9 ] becomes '_' (§1.1)."""
    return f"{re.sub(r'[^a-zA-Z0-9 ]', '_', node_name)} (#{node_id})"


def _annotation(text: str) -> Config:
    return config("nodeAnnotation", string("text", text), string("contentType", "text/plain"),
                  integer("bgcolor", 16777215), integer("x-coordinate", 0),
                  integer("y-coordinate", 0), integer("width", 0), integer("height", 0),
                  string("alignment", "CENTER"), integer("borderSize", 0),
                  integer("borderColor", 0), integer("defFontSize", -1),
                  integer("annotation-version", 20230412), config("styles"))


def _node_settings(label: str, settings: list, *, factory: str, node_name: str, bundle: tuple,
                   feature: tuple, creation: Config | None, n_out: int) -> Config:
    """The fixed frame of a non-executed node's settings.xml, in KNIME's key order (§3.1)."""
    bundle_name, bundle_symbolic = bundle
    feature_name, feature_symbolic = feature
    return config(
        "settings.xml",
        string("node_file", "settings.xml"),
        config("flow_stack"),
        config("internal_node_subsettings", string("memory_policy", "CacheSmallInMemory")),
        *settings,
        _annotation(label),
        string("customDescription", None),
        string("state", "CONFIGURED"),
        string("factory", factory),
        string("node-name", node_name),
        string("node-bundle-name", bundle_name),
        string("node-bundle-symbolic-name", bundle_symbolic),
        string("node-bundle-vendor", VENDOR),
        string("node-bundle-version", BUNDLE_VERSION),
        string("node-feature-name", feature_name),
        string("node-feature-symbolic-name", feature_symbolic),
        string("node-feature-vendor", VENDOR),
        string("node-feature-version", BUNDLE_VERSION),
        config("factory_settings"),
        *([creation] if creation is not None else []),
        string("name", node_name),
        boolean("hasContent", False),
        boolean("isInactive", False),
        config("ports", *[config(f"port_{i}", integer("index", i),
                                 string("port_dir_location", None))
                          for i in range(1, n_out + 1)]),
        config("filestores", string("file_store_location", None),
               string("file_store_id", None)),
    )


def _port_group(name: str, object_class: str, count: int) -> Config:
    return config(name, *[config(f"port_{i}", string("object_class", object_class))
                          for i in range(count)])


def python_script_settings(node: PythonScript, script: str) -> Config:
    creation = config("node_creation_config",
                      _port_group("Input object (pickled)", PICKLED, node.in_objects),
                      _port_group("Input table", TABLE, node.in_tables),
                      _port_group("Output table", TABLE, node.out_tables),
                      _port_group("Output image", IMAGE, node.out_images),
                      _port_group("Output object (pickled)", PICKLED, node.out_objects))
    model = config("model", string("python3_command", ""), string("script", script))
    return _node_settings(
        node.label, [model],
        factory=PYTHON_SCRIPT_FACTORY,
        node_name="Python Script",
        bundle=("KNIME Python 3 - Scripting Nodes", "org.knime.python3.scripting.nodes"),
        feature=("KNIME Python Integration", "org.knime.features.python3.scripting.feature.group"),
        creation=creation, n_out=len(out_ports(node)))


def legacy_source_settings(node: PythonSourceLegacy, script: str) -> Config:
    model = config("model", string("sourceCode", script), integer("rowLimit", 1000),
                   string("pythonVersionOption", "python3"), integer("chunkSize", 500000),
                   boolean("convertMissingToPython", False),
                   boolean("convertMissingFromPython", False),
                   string("sentinelOption", "MIN_VAL"), integer("sentinelValue", 0),
                   string("python2Command", ""), string("python3Command", ""))
    return _node_settings(
        node.label, [model], factory="org.knime.python2.nodes.source.Python2SourceNodeFactory",
        node_name="Python Source", bundle=("KNIME Python nodes", "org.knime.python2.nodes"),
        feature=("KNIME Python Integration", "org.knime.features.python2.feature.group"),
        creation=None, n_out=1)


def _view_model() -> Config:
    return config("model", boolean("generateImage", False), string("imageFormat", "SVG"),
                  integer("width", 800), integer("height", 600))


def _axis_limits() -> Config:
    return config("manualAxisLimits", double("xAxisManualMin", 0.0),
                  double("xAxisManualMax", 100.0), double("yAxisManualMin", 0.0),
                  double("yAxisManualMax", 100.0))


_VIEW_NODE = dict(bundle=("KNIME Views", "org.knime.base.views"),
                  feature=("KNIME Views", "org.knime.features.base.views.feature.group"),
                  creation=config("node_creation_config", config("Input Table"),
                                  config("Output Image")),
                  n_out=0)


def scatter_settings(node: ScatterPlot) -> Config:
    """Key structure of KNIME 5.5's Scatter Plot (reference: gateway 5.5 Scatter Plot (#6))."""
    view = config(
        "view",
        string("xAxisColumnV3", node.x), string("yAxisColumnV3", node.y),
        config("colorColumnV2", string("regularChoice", node.color),
               string("specialChoice_Internals", None)),
        integer("maxRows", node.max_rows), string("title", node.title),
        string("axisExtentMethod", "AUTO"), _axis_limits(),
        boolean("useCustomXAxisLabel", node.x_title_variable is not None),
        string("customXAxisLabel", None if node.x_title_variable is None else node.x),
        string("xAxisScale", "VALUE"),
        boolean("useCustomYAxisLabel", node.y_title_variable is not None),
        string("customYAxisLabel", None if node.y_title_variable is None else node.y),
        string("yAxisScale", "VALUE"),
        integer("dataPointSize", 3), boolean("showLegend", True),
        boolean("allowImageDownload", True), boolean("enableDataZoom", True),
        boolean("showTooltip", True), string("selectionMode", "EDIT"),
        config("referenceLines"), boolean("enableAnimation", False))
    bound = {"customXAxisLabel": node.x_title_variable, "customYAxisLabel": node.y_title_variable}
    settings = [_view_model(), view]
    if any(bound.values()):
        settings.append(_variables_tree("view_variables", bound))
    return _node_settings(node.label, settings,
                          factory="org.knime.base.views.node.scatterplot.ScatterPlotNodeFactory",
                          node_name="Scatter Plot", **_VIEW_NODE)


def _variables_tree(key: str, bound: dict[str, str | None]) -> Config:
    """Settings bound to flow variables (KNIME_FORMAT.md §3.7: version V_2019_09_13, a tree
    mirroring the settings' path). Per setting, what KNIME 5.5's dialogs write
    (knime-core-ui ``VariableSettings``): ``used_variable``, ``used_variable_flawed`` (false:
    the variable exists upstream) and ``exposed_variable``."""
    entries = [config(name, string("used_variable", variable),
                      boolean("used_variable_flawed", False), string("exposed_variable", None))
               for name, variable in bound.items() if variable]
    return config(key, string("version", "V_2019_09_13"), config("tree", *entries))


def table_view_settings(node: TableView) -> Config:
    """Key structure of KNIME 5.5's Table View (reference: gateway 5.5 Table View (#4))."""
    columns = config(
        "displayedColumnsV2", string("mode", "MANUAL"),
        config("patternFilter", string("pattern", ""), boolean("isCaseSensitive", False),
               boolean("isInverted", False)),
        config("manualFilter", array("manuallySelected", "xstring", node.columns),
               array("manuallyDeselected", "xstring", []),
               boolean("includeUnknownColumns", False)),
        config("typeFilter", array("selectedTypes", "xstring", [])))
    view = config(
        "view", columns,
        boolean("showRowIndices", False), boolean("showRowKeys", False),
        string("title", node.title), boolean("showTableSize", True),
        boolean("showColumnDataType", False), boolean("enablePagination", False),
        integer("pageSize", 10), string("autoSizeColumnsToContent", "FIXED"),
        string("rowHeightModeV2", "AUTO"), integer("customRowHeight", 80),
        integer("maxAutoRowHeight", 120), string("verticalPaddingMode", "DEFAULT"),
        boolean("enableGlobalSearch", True), boolean("enableColumnSearch", True),
        boolean("enableSortingByHeader", True), boolean("enableRendererSelection", True),
        boolean("enableCellCopying", True), string("selectionMode", "EDIT"),
        boolean("showOnlySelectedRows", False), boolean("showOnlySelectedRowsConfigurable", True),
        boolean("skipRemainingColumns_Internals", False),
        boolean("enableDataValueViews_Internals", False), string("rowLabel_Internals", "Rows"),
        boolean("showColumnCount_Internals", True))
    return _node_settings(node.label, [config("model"), view],
                          factory="org.knime.base.views.node.tableview.TableViewNodeFactory",
                          node_name="Table View", bundle=_VIEW_NODE["bundle"],
                          feature=_VIEW_NODE["feature"], creation=None, n_out=0)


def line_settings(node: LinePlot) -> Config:
    """Key structure of KNIME 5.5's Line Plot (reference: gateway 5.5 Line Plot (#7))."""
    y_columns = config(
        "yAxisColumnV2", string("mode", "MANUAL"),
        config("patternFilter", string("pattern", ""), boolean("isCaseSensitive", False),
               boolean("isInverted", False)),
        config("manualFilter", array("manuallySelected", "xstring", node.y),
               array("manuallyDeselected", "xstring", node.other_columns),
               boolean("includeUnknownColumns", False)),
        config("typeFilter", array("selectedTypes", "xstring", [])))
    view = config(
        "view",
        config("xAxisColumnV3", string("regularChoice", node.x),
               string("specialChoice_Internals", None)),
        y_columns,
        integer("maxRows", 2500), string("title", node.title),
        string("axisExtentMethod", "AUTO"), _axis_limits(),
        boolean("useCustomXAxisLabel", False), string("customXAxisLabel", None),
        boolean("useCustomYAxisLabel", True), string("customYAxisLabel", node.y_label),
        string("yAxisScale", "VALUE"), integer("lineSize", 2),
        boolean("showDataPointMarkers", True), integer("dataPointMarkerSize", 5),
        string("timeFormat", ""), boolean("showLegend", True),
        boolean("allowImageDownload", True), boolean("enableDataZoom", True),
        boolean("showTooltip", True), boolean("enableAnimation", False))
    return _node_settings(node.label, [_view_model(), view, config("view_variables")],
                          factory="org.knime.base.views.node.lineplot.LinePlotNodeFactory",
                          node_name="Line Plot", **_VIEW_NODE)


def node_name(node: spec.Node) -> str:
    """The node's name (a component: its own, which KNIME cuts to 12 characters in the folder
    name: FileWorkflowPersistor.saveNodeContainer)."""
    if isinstance(node, Component):
        return node.label[:12].strip()
    if isinstance(node, ConfigurationNode):
        return field_kind(node.setting).node_name
    return {PythonScript: "Python Script", PythonSourceLegacy: "Python Source",
            ScatterPlot: "Scatter Plot", LinePlot: "Line Plot", TableView: "Table View",
            ComponentInput: "Component Input", ComponentOutput: "Component Output"}[type(node)]


def configuration_settings(node: ConfigurationNode) -> Config:
    """A dialog field (knime-js-base's Configuration nodes, bundle org.knime.js.quickforms)."""
    return _node_settings(
        node.label, [field_model(node.setting)], factory=field_kind(node.setting).factory,
        node_name=field_kind(node.setting).node_name,
        bundle=("KNIME Quick Form Nodes", "org.knime.js.quickforms"),
        feature=("KNIME Quick Forms", "org.knime.features.js.quickforms.feature.group"),
        creation=None, n_out=1)


def node_settings(node: spec.Node, root: Path) -> Config:
    """A node's settings.xml; a script node embeds its script, read from under ``root``."""
    if isinstance(node, PythonScript):
        return python_script_settings(node, embedded_script(root, node.script, KNIO_DATA_AREA))
    if isinstance(node, ConfigurationNode):
        return configuration_settings(node)
    if isinstance(node, ComponentInput | ComponentOutput):
        return in_out_settings(node, BUNDLE_VERSION, VENDOR)
    if isinstance(node, PythonSourceLegacy):
        return legacy_source_settings(node, embedded_script(root, node.script, LEGACY_DATA_AREA))
    if isinstance(node, ScatterPlot):
        return scatter_settings(node)
    if isinstance(node, TableView):
        return table_view_settings(node)
    return line_settings(node)


def read_script(root: Path, path: str) -> str:
    """A node script exactly as committed (newlines normalised to \\n)."""
    return (root / path).read_text(encoding="utf-8").replace("\r\n", "\n")


# Where a node finds the workflow's data area: a Python Script node asks knio; the legacy
# Python Source node runs in the workflow folder, whose data area is ./data.
KNIO_DATA_AREA = "knio.get_workflow_data_area_dir()"
LEGACY_DATA_AREA = 'os.path.join(os.getcwd(), "data")'
NO_BUNDLE = ("This workflow's data folder has no vae_core: import the workflow from its .knwf "
             "file, or run `make workflow` in the vae-mnist-knime checkout.")


def bundle_guard(data_area: str) -> str:
    """The lines that make a node import the vae_core bundled in its workflow's data area and
    nothing else (not an installed copy), or fail with one message saying how to get it."""
    return ("import os\nimport sys\n\n"
            f"DATA_AREA = {data_area}  # holds the vae_core bundled with the workflow\n"
            'if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):\n'
            f"    raise RuntimeError({NO_BUNDLE!r})\n"
            "sys.path.insert(0, DATA_AREA)\n")


def embedded_script(root: Path, path: str, data_area: str) -> str:
    """The script a workflow embeds: ``nodes/<name>.py`` imports vae_core as a library; the
    bundle guard goes just before its first vae_core import."""
    lines = read_script(root, path).splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines)
                  if re.match(r"(from vae_core[ .]|import vae_core\b)", line)), None)
    if first is None:
        raise ValueError(f"{path} never imports vae_core: a node script calls one vae_core step")
    return "".join(lines[:first]) + bundle_guard(data_area) + "".join(lines[first:])
