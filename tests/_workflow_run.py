"""Reads and executes the committed KNIME workflows for the workflow tests
(``test_knime_workflow*.py``): its own parser of workflow.knime and settings.xml, and every node
run in topological order, each Python node in a fresh process through KNIME's real Python side.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import PIL.Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "knime_double"))  # test-only

from knime_batch import (  # noqa: E402
    CONFIGURATION_FACTORIES,
    apply_option,
    configuration_push,
    parse_args,
)
from knime_files import array_values, parse, value  # noqa: E402
from knime_legacy import run_legacy_source_isolated  # noqa: E402
from knime_runner import (  # noqa: E402  (puts KNIME's real knime.* packages on sys.path)
    Table,
    run_script_isolated,
)

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "knime_workflow"
PYTHON_SCRIPT = "org.knime.python3.scripting.nodes2.script.PythonScriptNodeFactory"
PYTHON_SOURCE = "org.knime.python2.nodes.source.Python2SourceNodeFactory"
SCATTER = "org.knime.base.views.node.scatterplot.ScatterPlotNodeFactory"
LINE = "org.knime.base.views.node.lineplot.LinePlotNodeFactory"
TABLE_VIEW = "org.knime.base.views.node.tableview.TableViewNodeFactory"
VIEWS = (SCATTER, LINE, TABLE_VIEW)
COMPONENT = "SubNode"  # a component has no factory: its workflow.knime entry says SubNode
VIRTUAL = "org.knime.core.node.workflow.virtual.subnode.VirtualSubNode"
COMPONENT_INPUT, COMPONENT_OUTPUT = VIRTUAL + "InputNodeFactory", VIRTUAL + "OutputNodeFactory"
PORT_KINDS = {"org.knime.core.node.BufferedDataTable": "table",
              "org.knime.core.node.port.image.ImagePortObject": "image",
              "org.knime.python2.port.PickledObjectFileStorePortObject": "object"}
PNG = b"\x89PNG\r\n\x1a\n"
IMAGE_NAMES = {"image", "input", "reconstruction", "error"}  # columns of PNG image cells
NAMES = ("VAE_MNIST", "VAE_MNIST_apply", "VAE_MNIST_experiments", "VAE_MNIST_legacy")


# ----------------------------------------------------------------------------- parsing
_CAST = {"INTEGER": int, "DOUBLE": float, "STRING": str}


def workflow_variables(wf: dict) -> dict[str, Any]:
    out = {}
    for var in wf["workflow_variables"].values():
        out[value(var, "name")] = _CAST[value(var, "class")](value(var, "value"))
    return out


def apply_batch_overrides(variables: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """What ``-workflow.variable=name,value,type`` does (types String | int | double only)."""
    return {**variables, **parse_args(args)[0]}


@dataclass
class Node:
    id: int
    settings: dict
    factory: str
    inputs: list[str] = field(default_factory=list)  # kinds of in-ports 1..n
    outputs: list[str] = field(default_factory=list)  # kinds of out-ports 1..n
    inner: tuple | None = None  # a component's own (workflow.knime, nodes, links)

    @property
    def label(self) -> str:
        """The node's annotation ("" for Component Input / Output, which have none)."""
        annotation = self.settings.get("nodeAnnotation")
        return value(annotation, "text") if annotation else ""

    @property
    def name(self) -> str:
        """A component's name (its workflow.knime's), else the label."""
        return value(self.inner[0], "name") if self.inner else self.label


def _group_size(creation: dict, group: str) -> int:
    return len(creation.get(group, {}))


def _port_kinds(ports: dict) -> list[str]:
    return [PORT_KINDS[value(p["type"], "object_class")] for p in ports.values()]


def load_workflow(folder: Path) -> tuple[dict, dict[int, Node], list[tuple[int, int, int, int]]]:
    """workflow.knime, its nodes (a component with its own workflow, recursively) and links
    (source, source port, dest, dest port; port 0 is the flow-variable port)."""
    wf = parse(folder / "workflow.knime")
    nodes = {}
    for entry in wf["nodes"].values():
        nid = int(value(entry, "id"))
        settings = parse(folder / value(entry, "node_settings_file"))
        if value(entry, "node_type") == COMPONENT:
            assert value(entry, "node_is_meta") == "true"
            node = Node(nid, settings, COMPONENT, _port_kinds(settings["inports"]),
                        _port_kinds(settings["outports"]),
                        load_workflow((folder / value(entry, "node_settings_file")).parent))
            nodes[nid] = node
            continue
        node = Node(nid, settings, value(settings, "factory"))
        creation = settings.get("node_creation_config", {})
        if node.factory == PYTHON_SCRIPT:
            node.inputs = (["object"] * _group_size(creation, "Input object (pickled)")
                           + ["table"] * _group_size(creation, "Input table"))
            node.outputs = (["table"] * _group_size(creation, "Output table")
                            + ["image"] * _group_size(creation, "Output image")
                            + ["object"] * _group_size(creation, "Output object (pickled)"))
        elif node.factory == PYTHON_SOURCE:
            node.outputs = ["table"]
        elif node.factory in VIEWS:
            node.inputs = ["table"]
        elif node.factory in CONFIGURATION_FACTORIES:
            node.outputs = ["variables"]
        elif node.factory == COMPONENT_INPUT:
            node.outputs = _port_kinds(settings["factory_settings"])
        elif node.factory == COMPONENT_OUTPUT:
            node.inputs = _port_kinds(settings["factory_settings"])
        else:
            raise AssertionError(f"unexpected node factory {node.factory}")
        nodes[nid] = node
    links = [(int(value(c, "sourceID")), int(value(c, "sourcePort")),
              int(value(c, "destID")), int(value(c, "destPort")))
             for c in wf["connections"].values()]
    return wf, nodes, links


def all_nodes(folder: Path) -> list[Node]:
    """Every node of the workflow folder, those inside its components too."""
    def walk(nodes: dict[int, Node]) -> list[Node]:
        return [m for n in nodes.values() for m in [n, *(walk(n.inner[1]) if n.inner else [])]]
    return walk(load_workflow(folder)[1])


def topological(nodes: dict[int, Node], links) -> list[int]:
    order: list[int] = []
    while len(order) < len(nodes):
        ready = [n for n in sorted(nodes) if n not in order
                 and all(src in order for src, _, dst, _ in links if dst == n)]
        assert ready, "cycle in the workflow"
        order += ready
    return order


def node_script(node: Node) -> str:
    model = node.settings["model"]
    return value(model, "script" if node.factory == PYTHON_SCRIPT else "sourceCode")


# ----------------------------------------------------------------------------- execution
@dataclass
class Run:
    nodes: dict[int, Node]
    outputs: dict[int, list[Any]]  # per node: Tables, PNG bytes, pickled objects (port order)
    pushed: dict[int, dict[str, Any]]  # flow variables each node pushed
    checked_views: dict[int, list[str]]
    variables: dict[str, Any]
    folder: Path

    def node(self, label: str) -> int:
        matches = [nid for nid, n in self.nodes.items() if "nodeAnnotation" in n.settings
                   and n.label == label]
        assert len(matches) == 1, f"no single node labelled {label}"
        return matches[0]

    def out(self, label: str, port: int = 0) -> Any:
        return self.outputs[self.node(label)][port]

    def component(self, name: str) -> Any:
        (rid,) = [r for r, n in self.nodes.items() if n.factory == COMPONENT and n.name == name]
        return rid


def _view_columns(node: Node) -> dict[str, str | list[str]]:
    view = node.settings["view"]
    if node.factory == SCATTER:
        return {"x": value(view, "xAxisColumnV3"), "y": value(view, "yAxisColumnV3"),
                "color": value(view["colorColumnV2"], "regularChoice")}
    if node.factory == TABLE_VIEW:
        manual = view["displayedColumnsV2"]["manualFilter"]
        return {"shown": array_values(manual["manuallySelected"])}
    manual = view["yAxisColumnV2"]["manualFilter"]
    return {"x": value(view["xAxisColumnV3"], "regularChoice"),
            "y": array_values(manual["manuallySelected"]),
            "others": array_values(manual["manuallyDeselected"])}


def check_view_input(node: Node, table: Table, flow: dict[str, Any]) -> list[str]:
    """The plot's configured columns must exist in its input, with plottable types; a Line
    Plot's deselected columns are exactly the input's other columns; a Table View's columns
    exist, and its image column holds PNG image cells; settings bound to flow variables name
    variables the node sees (KNIME fails the node on an unknown one)."""
    cols = _view_columns(node)
    df = table.to_pandas()
    for bound in node.settings.get("view_variables", {}).get("tree", {}).values():
        assert isinstance(flow.get(value(bound, "used_variable")), str), bound
    if "shown" in cols:
        assert set(cols["shown"]) <= set(table.column_names), cols["shown"]
        for name in IMAGE_NAMES & set(cols["shown"]):
            cells = [c for c in df[name] if c is not None and c == c]
            assert cells and all(isinstance(c, PIL.Image.Image) for c in cells), name
        return cols["shown"]
    used = [cols["x"], *(cols["y"] if isinstance(cols["y"], list) else [cols["y"]])]
    for name in used:
        assert name in table.column_names, f"node {node.id}: column {name} not in input"
        assert pd.api.types.is_numeric_dtype(df[name]), f"{name} must be numeric"
    if "color" in cols:
        assert cols["color"] in table.column_names
        assert str(df[cols["color"]].dtype) == "string", "colour column must be a category"
        used.append(cols["color"])
    if "others" in cols:
        assert sorted(cols["others"]) == sorted(set(table.column_names) - set(used))
    return used


def execute(folder: Path, overrides: list[str], tmp: Path) -> Run:
    """Execute every node of the workflow folder (cwd = the workflow folder), each Python
    Script node in a fresh process, after the batch arguments ``overrides`` set workflow
    variables (``-workflow.variable``) and node settings (``-option``) as BatchExecutor does."""
    wf, nodes, links = load_workflow(folder)
    given, options = parse_args(overrides)
    variables = {**workflow_variables(wf), **given}
    for option in options:  # these workflows have no metanodes
        assert apply_option({n: node.settings for n, node in nodes.items()},
                            dict.fromkeys(nodes, False), option), f"{option} reaches no node"
    run = Run({}, {}, {}, {}, variables, folder)
    _run_nodes(run, nodes, links, {**variables, "knime.workspace": str(tmp)}, lambda n: n)
    return run


def _run_nodes(run: Run, nodes: dict[int, Node], links: list, flow: dict[str, Any], key,
               inputs: list | None = None, dialog: dict | None = None
               ) -> tuple[dict[str, Any], list]:
    """Execute ``nodes`` in topological order into ``run`` (under ids ``key(id)``); a
    component's nodes run in its own scope: its Component Input gives them ``inputs`` and
    every flow variable of ``flow``, its Configuration nodes push the values of ``dialog`` (the
    component's model), and it pushes out every variable that is new or changed inside. Returns
    the flow at the end and what reached the Component Output."""
    results: dict[int, list[Any]] = {}
    reached: list = []
    for nid in topological(nodes, links):
        node, rid = nodes[nid], key(nid)
        feeds = {dport: results[src][sport - 1] for src, sport, dst, dport in links
                 if dst == nid and dport > 0}  # port 0: the flow-variable connection
        assert sorted(feeds) == list(range(1, len(node.inputs) + 1)), f"node {rid} inputs"
        objects = [feeds[p + 1] for p, k in enumerate(node.inputs) if k == "object"]
        tables = [feeds[p + 1] for p, k in enumerate(node.inputs) if k == "table"]
        results[nid] = []
        if node.factory == COMPONENT:
            inner_flow, results[nid] = _run_nodes(
                run, node.inner[1], node.inner[2], dict(flow), lambda n, c=rid: f"{c}:0:{n}",
                [feeds[p] for p in sorted(feeds)], node.settings["model"])
            run.pushed[rid] = {k: v for k, v in inner_flow.items()
                               if not k.startswith("knime.") and flow.get(k, k) != v}
            flow = {**flow, **run.pushed[rid]}
        elif node.factory == COMPONENT_INPUT:
            results[nid] = list(inputs or [])
        elif node.factory == COMPONENT_OUTPUT:
            reached = [feeds[p] for p in sorted(feeds)]
        elif node.factory in CONFIGURATION_FACTORIES:
            run.pushed[rid] = configuration_push(node.settings, dialog or {}, nid)
            flow = {**flow, **run.pushed[rid]}
        elif node.factory == PYTHON_SCRIPT:
            res = run_script_isolated(node_script(node), workflow_dir=run.folder,
                                      flow_variables=flow, input_tables=tables,
                                      input_objects=objects,
                                      n_out_tables=node.outputs.count("table"),
                                      n_out_images=node.outputs.count("image"),
                                      n_out_objects=node.outputs.count("object"))
            assert all(kind == "png" for kind in res.image_kinds), f"node {rid}: bad image"
            results[nid] = [*res.tables, *res.images, *res.objects]
            run.pushed[rid] = res.flow_variables
            flow = {**flow, **res.flow_variables}  # downstream nodes see pushed variables
        elif node.factory == PYTHON_SOURCE:
            res = run_legacy_source_isolated(node_script(node), workflow_dir=run.folder,
                                             flow_variables=flow)
            results[nid] = [Table.from_pandas(res.table, row_ids="keep")]
            run.pushed[rid] = res.flow_variables
        else:
            run.checked_views[rid] = check_view_input(node, tables[0], flow)
        run.nodes[rid], run.outputs[rid] = node, results[nid]
    return flow, reached


def import_name(workspace: Path, name: str) -> str:
    """The folder name KNIME 5.5 gives an imported workflow when the name is taken (knime-gateway
    Space.generateUniqueSpaceItemName, AUTORENAME): the name with 1, 2, ... appended, no
    brackets for workflows."""
    if not (workspace / name).exists():
        return name
    return next(f"{name}{n}" for n in itertools.count(1) if not (workspace / f"{name}{n}").exists())


def copy_workflow(name: str, workspace: Path) -> Path:
    """Import a workflow as a KNIME user does: unpack its committed .knwf (one top folder, the
    workflow, with its bundled vae_core) into the workspace, renamed as KNIME renames it when a
    workflow of that name is already there."""
    workspace.mkdir(parents=True, exist_ok=True)
    target = workspace / import_name(workspace, name)
    with tempfile.TemporaryDirectory(dir=workspace) as unpacked, \
            zipfile.ZipFile(WORKFLOWS / f"{name}.knwf") as zf:
        zf.extractall(unpacked)
        shutil.move(str(Path(unpacked) / name), target)
    return target


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if "__pycache__" not in p.parts}


def as_frame(table: Table) -> pd.DataFrame:
    df = table.to_pandas()
    assert df.index.is_unique
    return df


# VAE_MNIST's small run: the Train VAE dialog's values (knime-batch --var NAME=VALUE), several
# of them not the defaults, so the outputs show that these values, not the defaults, trained.
DIALOG_RUN = {"epochs": "2", "train_limit": "600", "eval_limit": "300", "batch_size": "100",
              "device": "cpu", "seed": "5", "hidden_dim": "64", "beta": "0.5",
              "learning_rate": "0.002", "lr_schedule": "cosine"}
