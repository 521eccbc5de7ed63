"""Runs the committed KNIME workflows without KNIME.

The test reads only the generated files (workflow.knime, settings.xml), with its own parser and
its own decoding of KNIME's escaping, checks that every embedded script is byte-identical to a
file in nodes/, then executes the Python nodes in topological order through the knio double on
a small MNIST subset, with workflow variables overridden the way ``-workflow.variable=`` does.
Every output port is checked, and so are the columns the Scatter Plot and Line Plot nodes are
configured with.
"""

from __future__ import annotations

import pickle
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "knime_double"))  # test-only

from knime.api.table import Table  # noqa: E402
from knime_files import array_values, parse, value  # noqa: E402
from knime_runner import (  # noqa: E402
    NodeExecutionError,
    run_legacy_source,
    run_script,
    run_script_isolated,
)

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "knime_workflow"
PYTHON_SCRIPT = "org.knime.python3.scripting.nodes.script.PythonScriptNodeFactory"
PYTHON_SOURCE = "org.knime.python2.nodes.source.Python2SourceNodeFactory"
SCATTER = "org.knime.base.views.node.scatterplot.ScatterPlotNodeFactory"
LINE = "org.knime.base.views.node.lineplot.LinePlotNodeFactory"
PNG = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- parsing
_CAST = {"INTEGER": int, "DOUBLE": float, "STRING": str}


def workflow_variables(wf: dict) -> dict[str, Any]:
    out = {}
    for var in wf["workflow_variables"].values():
        out[value(var, "name")] = _CAST[value(var, "class")](value(var, "value"))
    return out


def apply_batch_overrides(variables: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """What ``-workflow.variable=name,value,type`` does (types String | int | double only)."""
    out = dict(variables)
    for arg in args:
        name, raw, kind = arg.removeprefix("-workflow.variable=").split(",")
        out[name] = {"int": int, "double": float, "String": str}[kind](raw.strip('"'))
    return out


@dataclass
class Node:
    id: int
    settings: dict
    factory: str
    inputs: list[str] = field(default_factory=list)  # kinds of in-ports 1..n
    outputs: list[str] = field(default_factory=list)  # kinds of out-ports 1..n


def _group_size(creation: dict, group: str) -> int:
    return len(creation.get(group, {}))


def load_workflow(folder: Path) -> tuple[dict, dict[int, Node], list[tuple[int, int, int, int]]]:
    wf = parse(folder / "workflow.knime")
    nodes = {}
    for entry in wf["nodes"].values():
        nid = int(value(entry, "id"))
        settings = parse(folder / value(entry, "node_settings_file"))
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
        elif node.factory in (SCATTER, LINE):
            node.inputs = ["table"]
        else:
            raise AssertionError(f"unexpected node factory {node.factory}")
        nodes[nid] = node
    links = [(int(value(c, "sourceID")), int(value(c, "sourcePort")),
              int(value(c, "destID")), int(value(c, "destPort")))
             for c in wf["connections"].values()]
    return wf, nodes, links


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
    checked_views: dict[int, list[str]]
    variables: dict[str, Any]
    folder: Path


def _view_columns(node: Node) -> dict[str, str | list[str]]:
    view = node.settings["view"]
    if node.factory == SCATTER:
        return {"x": value(view, "xAxisColumnV3"), "y": value(view, "yAxisColumnV3"),
                "color": value(view["colorColumnV2"], "regularChoice")}
    manual = view["yAxisColumnV2"]["manualFilter"]
    return {"x": value(view["xAxisColumnV3"], "regularChoice"),
            "y": array_values(manual["manuallySelected"])}


def check_view_input(node: Node, table: Table) -> list[str]:
    """The plot's configured columns must exist in its input, with plottable types."""
    cols = _view_columns(node)
    df = table.to_pandas()
    used = [cols["x"], *(cols["y"] if isinstance(cols["y"], list) else [cols["y"]])]
    for name in used:
        assert name in table.column_names, f"node {node.id}: column {name} not in input"
        assert pd.api.types.is_numeric_dtype(df[name]), f"{name} must be numeric"
    if "color" in cols:
        assert cols["color"] in table.column_names
        assert str(df[cols["color"]].dtype) == "string", "colour column must be a category"
        used.append(cols["color"])
    return used


def execute(folder: Path, overrides: list[str], tmp: Path) -> Run:
    """Execute every node of the workflow folder (a copy: cwd = the workflow folder)."""
    wf, nodes, links = load_workflow(folder)
    variables = apply_batch_overrides(workflow_variables(wf), overrides)
    flow = {**variables, "knime.workspace": str(tmp)}
    outputs: dict[int, list[Any]] = {}
    checked: dict[int, list[str]] = {}
    for nid in topological(nodes, links):
        node = nodes[nid]
        feeds = {dport: outputs[src][sport - 1] for src, sport, dst, dport in links if dst == nid}
        assert sorted(feeds) == list(range(1, len(node.inputs) + 1)), f"node {nid} inputs"
        objects = [feeds[p + 1] for p, k in enumerate(node.inputs) if k == "object"]
        tables = [feeds[p + 1] for p, k in enumerate(node.inputs) if k == "table"]
        if node.factory == PYTHON_SCRIPT:
            res = run_script(node_script(node), workflow_dir=folder, flow_variables=flow,
                             input_tables=tables, input_objects=objects,
                             n_out_tables=node.outputs.count("table"),
                             n_out_images=node.outputs.count("image"),
                             n_out_objects=node.outputs.count("object"), name=f"node {nid}")
            assert all(kind == "png" for kind in res.image_kinds), f"node {nid}: bad image"
            outputs[nid] = [*res.tables, *res.images, *res.objects]
        elif node.factory == PYTHON_SOURCE:
            res = run_legacy_source(node_script(node), workflow_dir=folder, flow_variables=flow)
            outputs[nid] = [Table.from_pandas(res.table, row_ids="keep")]
        else:
            checked[nid] = check_view_input(node, tables[0])
            outputs[nid] = []
    return Run(nodes, outputs, checked, variables, folder)


def copy_workflow(name: str, tmp: Path) -> Path:
    target = tmp / name
    shutil.copytree(WORKFLOWS / name, target)
    return target


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# ----------------------------------------------------------------------------- tests
def test_embedded_scripts_are_the_node_files():
    """Every script in the committed workflows equals a nodes/*.py file, and all are used."""
    files = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "nodes").glob("*.py")}
    used = []
    for name in ("VAE_MNIST", "VAE_MNIST_legacy"):
        _, nodes, _ = load_workflow(WORKFLOWS / name)
        for node in nodes.values():
            if node.factory in (PYTHON_SCRIPT, PYTHON_SOURCE):
                script = node_script(node)
                matches = [f for f, text in files.items() if text == script]
                assert len(matches) == 1, f"{name} node {node.id}: script matches {matches}"
                used += matches
    assert sorted(used) == sorted(files), "every nodes/*.py must be used exactly once"


def test_batch_override_parser():
    base = {"epochs": 30, "beta": 1.0, "data_dir": ""}
    got = apply_batch_overrides(base, ["-workflow.variable=epochs,2,int",
                                       '-workflow.variable=data_dir,"/x y",String',
                                       "-workflow.variable=beta,0.5,double"])
    assert got == {"epochs": 2, "beta": 0.5, "data_dir": "/x y"}


@pytest.fixture(scope="module")
def main_run(mnist_dir, tmp_path_factory) -> Run:
    tmp = tmp_path_factory.mktemp("knime")
    folder = copy_workflow("VAE_MNIST", tmp)
    before = files_in(folder)
    run = execute(folder, [
        "-workflow.variable=epochs,2,int", "-workflow.variable=train_limit,600,int",
        "-workflow.variable=eval_limit,300,int", "-workflow.variable=batch_size,100,int",
        "-workflow.variable=device,cpu,String", "-workflow.variable=seed,5,int",
        f"-workflow.variable=data_dir,{mnist_dir},String"], tmp)
    assert files_in(folder) == before, "nodes must not write into the workflow folder"
    return run


def _node(run: Run, label: str) -> int:
    for nid, node in run.nodes.items():
        if "nodeAnnotation" in node.settings and \
                value(node.settings["nodeAnnotation"], "text") == label:
            return nid
    raise AssertionError(f"no node labelled {label}")


def _df(table: Table) -> pd.DataFrame:
    df = table.to_pandas()
    assert df.index.is_unique
    return df


def test_every_python_node_ran_and_filled_its_ports(main_run):
    for nid, node in main_run.nodes.items():
        if node.factory == PYTHON_SCRIPT:
            outs = main_run.outputs[nid]
            assert len(outs) == len(node.outputs) > 0
            for kind, out in zip(node.outputs, outs, strict=True):
                if kind == "table":
                    assert isinstance(out, Table) and out.num_rows > 0
                elif kind == "image":
                    assert out.startswith(PNG) and len(out) > 1000
                else:
                    assert pickle.loads(out) is not None
    assert set(main_run.checked_views) == {n for n, node in main_run.nodes.items()
                                           if node.factory in (SCATTER, LINE)}


def test_view_nodes_are_configured_on_real_columns(main_run):
    scatter = next(n for n, node in main_run.nodes.items() if node.factory == SCATTER)
    line = next(n for n, node in main_run.nodes.items() if node.factory == LINE)
    assert main_run.checked_views[scatter] == ["z1", "z2", "digit"]
    assert main_run.checked_views[line] == ["epoch", "train_loss", "test_loss"]


def test_output_contents(main_run):
    from vae_core.artifact import TrainedVAE
    from vae_core.tables import LOSS_COLUMNS, PIXEL_COLUMNS

    load, train = _node(main_run, "Load MNIST"), _node(main_run, "Train VAE")
    samples, evaluation = (_df(t) for t in main_run.outputs[load][:2])
    assert samples.shape == (64, 4 + 784) and list(samples.columns[4:]) == PIXEL_COLUMNS
    assert len(evaluation) == 300 and evaluation["label"].between(0, 9).all()
    assert list(evaluation.index[:2]) == ["Row0", "Row1"]
    loss = _df(main_run.outputs[train][0])
    assert list(loss.columns) == LOSS_COLUMNS and loss["epoch"].tolist() == [1, 2]
    assert np.isfinite(loss.to_numpy(dtype=float)).all()
    model = pickle.loads(main_run.outputs[train][2])
    assert isinstance(model, TrainedVAE)
    cfg = model.config
    assert (cfg.epochs, cfg.train_limit, cfg.eval_limit, cfg.seed) == (2, 600, 300, 5)
    latent = _df(main_run.outputs[_node(main_run, "Encode")][0])
    assert len(latent) == 300 and latent["digit"].tolist() == latent["label"].astype(str).tolist()
    recon = _df(main_run.outputs[_node(main_run, "Reconstruct")][0])
    assert recon["kind"].tolist() == ["original", "reconstruction"] * 10
    generated = _df(main_run.outputs[_node(main_run, "Generate")][0])
    assert len(generated) == 64 and generated[PIXEL_COLUMNS].stack().between(0, 1).all()


def test_workflow_reproduces_the_cli_pipeline(main_run, mnist_dir):
    """The nodes give exactly the tables ``vae-mnist run`` computes for the same model."""
    from vae_core.data import load_mnist
    from vae_core.pipeline import lab_results

    train = _node(main_run, "Train VAE")
    trained = pickle.loads(main_run.outputs[train][2])
    data = load_mnist(trained.config, mnist_dir)
    lab = lab_results(trained.model(), trained.config, data, trained.history)
    pairs = {"Load MNIST": ("samples", 0), "Encode": ("latent", 0),
             "Reconstruct": ("reconstructions", 0), "Generate": ("generated", 0)}
    for label, (field_name, port) in pairs.items():
        got = _df(main_run.outputs[_node(main_run, label)][port]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, getattr(lab, field_name), check_dtype=True)
    loss = _df(main_run.outputs[train][0]).reset_index(drop=True)
    pd.testing.assert_frame_equal(loss.drop(columns="seconds"),
                                  lab.loss.drop(columns="seconds"))


def test_model_object_crosses_a_process_boundary(main_run):
    """Generate runs in a fresh Python process: the model is unpickled there before the script,
    from vae_core as installed (PYTHONPATH replaced), and gives the same table."""
    gen = _node(main_run, "Generate")
    node = main_run.nodes[gen]
    train_port = main_run.outputs[_node(main_run, "Train VAE")][2]
    res = run_script_isolated(node_script(node), workflow_dir=main_run.folder,
                              flow_variables=main_run.variables, input_objects=[train_port],
                              n_out_tables=1, n_out_images=1)
    pd.testing.assert_frame_equal(_df(res.tables[0]), _df(main_run.outputs[gen][0]))
    assert res.image_kinds == ["png"]


def test_bad_workflow_variable_fails_the_node_with_one_clear_message(tmp_path):
    folder = copy_workflow("VAE_MNIST", tmp_path)
    with pytest.raises(NodeExecutionError) as err:
        execute(folder, ["-workflow.variable=epochs,abc,String"], tmp_path)
    message = str(err.value)
    assert message.startswith("Execute failed: ConfigError: epochs must be an integer, got 'abc'")
    assert "Traceback" not in message and "-workflow.variable" in message


def test_wrong_object_on_the_model_port_is_rejected(main_run):
    node = main_run.nodes[_node(main_run, "Generate")]
    with pytest.raises(NodeExecutionError, match="VAEError: The model input must be the model "
                                                 "object from the Train VAE node, got dict"):
        run_script(node_script(node), workflow_dir=main_run.folder,
                   flow_variables=main_run.variables, input_objects=[pickle.dumps({"a": 1})],
                   n_out_tables=1, n_out_images=1)


def test_legacy_workflow_runs(mnist_dir, tmp_path):
    folder = copy_workflow("VAE_MNIST_legacy", tmp_path)
    run = execute(folder, ["-workflow.variable=epochs,1,int",
                           "-workflow.variable=train_limit,300,int",
                           "-workflow.variable=eval_limit,100,int",
                           "-workflow.variable=batch_size,100,int",
                           "-workflow.variable=device,cpu,String",
                           f"-workflow.variable=data_dir,{mnist_dir},String"], tmp_path)
    source = next(n for n, node in run.nodes.items() if node.factory == PYTHON_SOURCE)
    loss = run.outputs[source][0].to_pandas()
    assert loss["epoch"].tolist() == [1] and list(loss.index) == ["Row0"]
    assert np.isfinite(loss["test_loss"]).all()
    assert list(run.checked_views.values()) == [["epoch", "train_loss", "test_loss"]]
