"""Runs the committed KNIME workflows without KNIME, through KNIME 5.5.3's real Python side.

The test reads only the generated files (workflow.knime, settings.xml), with its own parser and
its own decoding of KNIME's escaping, checks that every embedded script is byte-identical to a
file in nodes/, then executes every node in topological order, each Python node in a fresh
Python process (tests/knime_double/knime_runner.py: KNIME's own launcher, knio and pandas <->
Arrow conversion; PYTHONPATH replaced, so vae_core comes from the workflow's data area only),
with workflow variables overridden the way ``-workflow.variable=`` does. Every output port is
checked, and so are the columns the Scatter Plot and Line Plot nodes use.

`make test` runs this file in .venv (vae_core installed: the bundled copy must still win) and in
.venv-knime (KNIME 5.5's pins, vae_core not installed: the bundled copy is all there is).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "knime_double"))  # test-only

from knime_files import array_values, parse, value  # noqa: E402
from knime_runner import (  # noqa: E402  (puts KNIME's real knime.* packages on sys.path)
    NodeExecutionError,
    Table,
    run_legacy_source_isolated,
    run_script_isolated,
)

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "knime_workflow"
PYTHON_SCRIPT = "org.knime.python3.scripting.nodes.script.PythonScriptNodeFactory"
PYTHON_SOURCE = "org.knime.python2.nodes.source.Python2SourceNodeFactory"
SCATTER = "org.knime.base.views.node.scatterplot.ScatterPlotNodeFactory"
LINE = "org.knime.base.views.node.lineplot.LinePlotNodeFactory"
TABLE_VIEW = "org.knime.base.views.node.tableview.TableViewNodeFactory"
VIEWS = (SCATTER, LINE, TABLE_VIEW)
PNG = b"\x89PNG\r\n\x1a\n"
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
    out = dict(variables)
    for arg in args:  # KNIME tokenises with quote support: "a,b" is one value
        name, raw, kind = next(csv.reader([arg.removeprefix("-workflow.variable=")]))
        out[name] = {"int": int, "double": float, "String": str}[kind](raw)
    return out


@dataclass
class Node:
    id: int
    settings: dict
    factory: str
    inputs: list[str] = field(default_factory=list)  # kinds of in-ports 1..n
    outputs: list[str] = field(default_factory=list)  # kinds of out-ports 1..n

    @property
    def label(self) -> str:
        return value(self.settings["nodeAnnotation"], "text")


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
        elif node.factory in VIEWS:
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
        if "image" in cols["shown"]:
            cells = [c for c in df["image"] if c is not None and c == c]
            assert cells and all(isinstance(c, PIL.Image.Image) for c in cells)
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
    Script node in a fresh process."""
    wf, nodes, links = load_workflow(folder)
    variables = apply_batch_overrides(workflow_variables(wf), overrides)
    flow = {**variables, "knime.workspace": str(tmp)}
    outputs: dict[int, list[Any]] = {}
    pushed: dict[int, dict[str, Any]] = {}
    checked: dict[int, list[str]] = {}
    for nid in topological(nodes, links):
        node = nodes[nid]
        feeds = {dport: outputs[src][sport - 1] for src, sport, dst, dport in links if dst == nid}
        assert sorted(feeds) == list(range(1, len(node.inputs) + 1)), f"node {nid} inputs"
        objects = [feeds[p + 1] for p, k in enumerate(node.inputs) if k == "object"]
        tables = [feeds[p + 1] for p, k in enumerate(node.inputs) if k == "table"]
        if node.factory == PYTHON_SCRIPT:
            res = run_script_isolated(node_script(node), workflow_dir=folder,
                                      flow_variables=flow, input_tables=tables,
                                      input_objects=objects,
                                      n_out_tables=node.outputs.count("table"),
                                      n_out_images=node.outputs.count("image"),
                                      n_out_objects=node.outputs.count("object"))
            assert all(kind == "png" for kind in res.image_kinds), f"node {nid}: bad image"
            outputs[nid] = [*res.tables, *res.images, *res.objects]
            pushed[nid] = res.flow_variables
            flow = {**flow, **res.flow_variables}  # downstream nodes see pushed variables
        elif node.factory == PYTHON_SOURCE:
            res = run_legacy_source_isolated(node_script(node), workflow_dir=folder,
                                             flow_variables=flow)
            outputs[nid] = [Table.from_pandas(res.table, row_ids="keep")]
            pushed[nid] = res.flow_variables
        else:
            checked[nid] = check_view_input(node, tables[0], flow)
            outputs[nid] = []
    return Run(nodes, outputs, pushed, checked, variables, folder)


def copy_workflow(name: str, workspace: Path) -> Path:
    """Import a workflow as a KNIME user does: unpack its committed .knwf (one top folder, the
    workflow, with its bundled vae_core) into the workspace."""
    with zipfile.ZipFile(WORKFLOWS / f"{name}.knwf") as zf:
        zf.extractall(workspace)
    return workspace / name


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if "__pycache__" not in p.parts}


def _df(table: Table) -> pd.DataFrame:
    df = table.to_pandas()
    assert df.index.is_unique
    return df


SMALL = ["-workflow.variable=epochs,2,int", "-workflow.variable=train_limit,600,int",
         "-workflow.variable=eval_limit,300,int", "-workflow.variable=batch_size,100,int",
         "-workflow.variable=device,cpu,String", "-workflow.variable=seed,5,int"]


# ----------------------------------------------------------------------------- static checks
def test_embedded_scripts_are_the_node_files():
    """Every script in the committed workflows equals a nodes/*.py file, and all are used."""
    files = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "nodes").glob("*.py")}
    used = set()
    for name in NAMES:
        _, nodes, _ = load_workflow(WORKFLOWS / name)
        for node in nodes.values():
            if node.factory in (PYTHON_SCRIPT, PYTHON_SOURCE):
                script = node_script(node)
                matches = [f for f, text in files.items() if text == script]
                assert len(matches) == 1, f"{name} node {node.id}: script matches {matches}"
                used.update(matches)
    assert used == set(files), "every nodes/*.py must be used"


def test_every_node_script_imports_the_bundled_vae_core_first():
    """The data area goes first on sys.path before vae_core is imported (knio nodes through
    knio, the legacy node through its working directory, the workflow folder)."""
    for path in (REPO / "nodes").glob("*.py"):
        lines = path.read_text().splitlines()
        first_import = next(i for i, ln in enumerate(lines) if "vae_core" in ln
                            and ln.startswith("from "))
        setup = [i for i, ln in enumerate(lines) if ln.startswith("sys.path.insert(0, ")]
        assert setup and setup[0] < first_import, path.name
        assert lines[setup[0]] == "sys.path.insert(0, DATA_AREA)", path.name
        want = ("os.path.join(os.getcwd(), \"data\")" if "legacy" in path.name
                else "knio.get_workflow_data_area_dir()")
        area = [ln for ln in lines[:setup[0]] if ln.startswith("DATA_AREA = ")]
        assert len(area) == 1 and want in area[0], path.name


NO_BUNDLE = ("This workflow's data folder has no vae_core: import the workflow from its .knwf "
             "file, or run `make workflow` in the vae-mnist-knime checkout.")


def test_a_node_in_a_folder_without_its_bundle_says_how_to_get_it(tmp_path):
    """A workflow folder as git has it (no data/vae_core, a build output) fails at its first
    node with one message, even where a vae_core is installed (.venv): never another copy."""
    folder = copy_workflow("VAE_MNIST", tmp_path)
    shutil.rmtree(folder / "data" / "vae_core")
    _, nodes, _ = load_workflow(folder)
    load = next(n for n in nodes.values() if n.label == "Load MNIST")
    with pytest.raises(NodeExecutionError) as err:
        run_script_isolated(node_script(load), workflow_dir=folder,
                            flow_variables=workflow_variables(parse(folder / "workflow.knime")),
                            n_out_tables=3)
    assert NO_BUNDLE in str(err.value) and "Traceback" not in str(err.value)


def test_the_legacy_node_without_its_bundle_says_how_to_get_it(tmp_path):
    folder = copy_workflow("VAE_MNIST_legacy", tmp_path)
    shutil.rmtree(folder / "data" / "vae_core")
    _, nodes, _ = load_workflow(folder)
    source = next(n for n in nodes.values() if n.factory == PYTHON_SOURCE)
    with pytest.raises(NodeExecutionError) as err:
        run_legacy_source_isolated(node_script(source), workflow_dir=folder,
                                   flow_variables=workflow_variables(
                                       parse(folder / "workflow.knime")))
    assert NO_BUNDLE in str(err.value)


def test_batch_override_parser():
    base = {"epochs": 30, "beta": 1.0, "data_dir": ""}
    got = apply_batch_overrides(base, ["-workflow.variable=epochs,2,int",
                                       '-workflow.variable=data_dir,"/x y,z",String',
                                       "-workflow.variable=beta,0.5,double"])
    assert got == {"epochs": 2, "beta": 0.5, "data_dir": "/x y,z"}


# ----------------------------------------------------------------------------- main + apply
@pytest.fixture(scope="module")
def workspace(mnist_dir, tmp_path_factory) -> Path:
    """A KNIME workspace with the main and the apply workflow imported side by side."""
    ws = tmp_path_factory.mktemp("workspace")
    for name in ("VAE_MNIST", "VAE_MNIST_apply"):
        copy_workflow(name, ws)
    return ws


@pytest.fixture(scope="module")
def main_run(workspace, mnist_dir) -> Run:
    folder = workspace / "VAE_MNIST"
    before = files_in(folder)
    run = execute(folder, [*SMALL, f"-workflow.variable=data_dir,{mnist_dir},String"],
                  workspace)
    # the only file a node writes is the model Save Model puts in the data area
    assert files_in(folder) - before == {"data/vae_mnist_model.pt"}
    return run


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
                    assert pickle.loads(out)["format"] == "vae-mnist-model"
    assert set(main_run.checked_views) == {n for n, node in main_run.nodes.items()
                                           if node.factory in VIEWS}


def test_view_nodes_are_configured_on_real_columns(main_run):
    views = {main_run.nodes[n].label: cols for n, cols in main_run.checked_views.items()}
    assert views["Latent space"] == ["z1", "z2", "digit"]
    assert views["Latent explorer"] == ["plot_x", "plot_y", "digit"]
    assert views["Loss per epoch"] == ["epoch", "train_loss", "test_loss"]
    assert {k: v[0] for k, v in views.items() if k not in (
        "Latent space", "Latent explorer", "Loss per epoch")} == {
        "Latent explorer digits": "image", "Originals and reconstructions": "image",
        "Generated digits": "image", "Sample images": "image"}


def test_image_columns_arrive_as_png_cells_with_the_digits(main_run):
    """Through KNIME's conversion a PIL column becomes PNG image cells; read back they are
    the digits of the table's own pixels."""
    from vae_core.outputs.tables import PIXEL_COLUMNS

    for label, port in (("Reconstruct", 0), ("Generate", 0), ("Load MNIST", 2),
                        ("Encode", 1), ("Decode", 0)):
        df = _df(main_run.out(label, port))
        cells = list(df["image"])
        assert all(isinstance(c, PIL.Image.Image) and c.size == (56, 56) for c in cells), label
        if PIXEL_COLUMNS[0] not in df.columns:  # the explorer: compare with the held-out table
            held = _df(main_run.out("Load MNIST", 1)).set_index("image_id")
            pixels = held.loc[df["image_id"], PIXEL_COLUMNS].to_numpy(np.float64)
        else:
            pixels = df[PIXEL_COLUMNS].to_numpy(np.float64)
        if pixels.max() <= 1:  # float pixels in [0, 1]; grey-level tables are 0-255 already
            pixels = np.rint(pixels * 255)
        got = np.stack([np.asarray(c.convert("L"))[::2, ::2].ravel() for c in cells])
        np.testing.assert_array_equal(got, pixels, err_msg=label)


def test_latent_explorer_titles_say_what_is_plotted(main_run):
    pushed = main_run.pushed[main_run.node("Encode")]
    assert pushed == {"latent_x_title": "z1 (μ)", "latent_y_title": "z2 (μ)"}  # latent_dim 2
    explorer = _df(main_run.out("Encode", 1))
    latent = _df(main_run.out("Encode"))
    assert len(explorer) == len(latent) == 300  # at most 1000 rows; here all of them
    np.testing.assert_array_equal(explorer[["plot_x", "plot_y"]].to_numpy(),
                                  latent[["z1", "z2"]].to_numpy())


def test_output_contents(main_run):
    from vae_core.outputs.tables import LOSS_COLUMNS, PIXEL_COLUMNS

    train, heldout, samples = (_df(main_run.out("Load MNIST", i)) for i in range(3))
    assert len(train) == 600 and len(heldout) == 300 and samples.shape == (64, 4 + 784 + 1)
    assert (train[PIXEL_COLUMNS].dtypes == "int32").all()  # grey levels: KNIME integer columns
    assert train[PIXEL_COLUMNS].stack().between(0, 255).all()
    assert list(heldout.index[:2]) == ["Row0", "Row1"]
    loss = _df(main_run.out("Train VAE"))
    assert list(loss.columns[:len(LOSS_COLUMNS)]) == LOSS_COLUMNS
    assert loss["epoch"].tolist() == [1, 2]
    # the settings ride in every row, so tables a Loop End collects stay self-describing
    assert loss[["latent_dim", "beta", "epochs", "batch_size", "seed", "train_images",
                 "heldout_images"]].drop_duplicates().values.tolist() == [[2, 1.0, 2, 100, 5,
                                                                           600, 300]]
    record = pickle.loads(main_run.out("Train VAE", 2))
    cfg = record["config"]
    assert (cfg["epochs"], cfg["train_limit"], cfg["eval_limit"], cfg["seed"]) == (2, 600, 300, 5)
    latent = _df(main_run.out("Encode"))
    assert len(latent) == 300 and latent["digit"].tolist() == latent["label"].astype(str).tolist()
    recon = _df(main_run.out("Reconstruct"))
    assert recon["kind"].tolist() == ["original", "reconstruction"] * 10
    generated = _df(main_run.out("Generate"))
    assert len(generated) == 64 and generated[PIXEL_COLUMNS].stack().between(0, 1).all()
    decoded = _df(main_run.out("Decode"))  # the explorer's rows: here all 300
    assert len(decoded) == 300
    np.testing.assert_allclose(decoded[["z1", "z2"]].to_numpy(), latent[["z1", "z2"]].to_numpy())
    saved = _df(main_run.out("Save Model"))
    assert saved["status"].tolist() == ["written"]
    assert saved["model_path"].iloc[0] == str(main_run.folder / "data" / "vae_mnist_model.pt")


def test_train_vae_pushes_its_results_as_plain_float_flow_variables(main_run):
    from vae_core.nodes.steps import RESULT_VARIABLES

    pushed = main_run.pushed[main_run.node("Train VAE")]
    assert set(pushed) == set(RESULT_VARIABLES)
    assert all(type(v) is float for v in pushed.values())
    loss = _df(main_run.out("Train VAE"))
    assert pushed["vae_heldout_loss"] == loss["test_loss"].iloc[-1]
    assert pushed["vae_train_kl"] == loss["train_kl"].iloc[-1]


def test_workflow_reproduces_the_cli_pipeline(main_run, mnist_dir):
    """Trained on the tables KNIME passed, the model is the one `vae-mnist run` trains, and
    the nodes give exactly the tables the CLI computes with it."""
    from vae_core.config import TrainConfig
    from vae_core.data.splits import load_mnist
    from vae_core.outputs.results import lab_results
    from vae_core.training.loop import train
    from vae_core.training.model_file import TrainedVAE

    trained = TrainedVAE.from_record(pickle.loads(main_run.out("Train VAE", 2)))
    config = TrainConfig.from_dict(trained.record["config"])
    data = load_mnist(config, mnist_dir)
    direct = train(config, data, progress=False)
    for name, tensor in direct.model.state_dict().items():
        assert torch.equal(tensor, trained.record["model"][name]), name
    lab = lab_results(trained.model(), config, data, trained.history)
    pairs = {"Load MNIST": ("samples", 2), "Encode": ("latent", 0),
             "Reconstruct": ("reconstructions", 0), "Generate": ("generated", 0)}
    for label, (field_name, port) in pairs.items():
        got = _df(main_run.out(label, port)).reset_index(drop=True)
        got = got.drop(columns=["image"], errors="ignore")  # image cells: KNIME tables only
        pd.testing.assert_frame_equal(got, getattr(lab, field_name), check_dtype=True)
    loss = _df(main_run.out("Train VAE")).reset_index(drop=True)[lab.loss.columns]
    pd.testing.assert_frame_equal(loss.drop(columns="seconds"), lab.loss.drop(columns="seconds"))


def test_nodes_run_the_bundled_vae_core(main_run):
    """In a fresh node process vae_core is the copy in the workflow's data area, even in an
    environment where another vae_core is installed."""
    probe = ("import sys\nimport knime.scripting.io as knio\n"
             "sys.path.insert(0, knio.get_workflow_data_area_dir())\nimport vae_core\n"
             "knio.flow_variables['vae_core_file'] = vae_core.__file__\n")
    res = run_script_isolated(probe, workflow_dir=main_run.folder, flow_variables={})
    assert Path(res.flow_variables["vae_core_file"]) == \
        main_run.folder / "data" / "vae_core" / "__init__.py"


@pytest.fixture(scope="module")
def apply_run(main_run, workspace) -> Run:
    """The apply workflow with its defaults, no edits: it finds the model the main saved."""
    folder = workspace / "VAE_MNIST_apply"
    before = files_in(folder)
    run = execute(folder, [], workspace)
    assert files_in(folder) == before
    return run


def test_apply_workflow_uses_the_model_the_main_workflow_saved(main_run, apply_run):
    from vae_core.training.model_file import TrainedVAE

    info = _df(apply_run.out("Load Model"))
    assert info["status"].tolist() == ["loaded"]
    assert Path(info["model_path"].iloc[0]) == main_run.folder / "data" / "vae_mnist_model.pt"
    trained = TrainedVAE.from_record(pickle.loads(main_run.out("Train VAE", 2)))
    loaded = TrainedVAE.from_record(pickle.loads(apply_run.out("Load Model", 1)))
    assert loaded.same_model(trained) and loaded.history == trained.history
    heldout = _df(apply_run.out("Load MNIST", 1))
    assert len(heldout) == 10000 and set(heldout["source"]) == {"test"}  # eval_set=test
    latent = _df(apply_run.out("Encode"))
    assert len(latent) == 10000
    images = torch.from_numpy(heldout.filter(like="pixel_").to_numpy("int32")).float() / 255
    with torch.no_grad():
        mu, _ = trained.model().encode(images)
    np.testing.assert_allclose(latent[["z1", "z2"]].to_numpy(), mu.numpy(), rtol=1e-5,
                               atol=1e-6)
    assert len(_df(apply_run.out("Decode"))) == 1000  # the latent explorer's 1000 images
    assert len(_df(apply_run.out("Generate"))) == 64
    views = {apply_run.nodes[n].label: c for n, c in apply_run.checked_views.items()}
    assert views["Latent space"] == ["z1", "z2", "digit"]
    assert views["Latent explorer"] == ["plot_x", "plot_y", "digit"]


def test_a_cli_run_feeds_the_apply_workflow_and_a_workflow_model_feeds_the_cli(
        main_run, workspace, mnist_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "vae_core.cli", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return proc

    run_dir = tmp_path / "cli_run"
    cli("run", "--run-dir", run_dir, "--epochs", 1, "--train-limit", 300, "--eval-limit", 100,
        "--latent-dim", 3, "--device", "cpu", "--data-dir", mnist_dir, "--quiet")
    load = next(n for n in load_workflow(workspace / "VAE_MNIST_apply")[1].values()
                if n.label == "Load Model")
    for target in (run_dir, run_dir / "checkpoint.pt"):
        res = run_script_isolated(node_script(load), workflow_dir=workspace / "VAE_MNIST_apply",
                                  flow_variables={"model_path": str(target)},
                                  n_out_tables=1, n_out_objects=1)
        record = pickle.loads(res.objects[0])
        assert record["config"]["latent_dim"] == 3 and len(record["history"]) == 1
    # and the other way: the workflow's saved model becomes a CLI run folder
    saved = main_run.folder / "data" / "vae_mnist_model.pt"
    imported = tmp_path / "from_knime"
    cli("import-model", saved, "--run-dir", imported, "--data-dir", mnist_dir, "--quiet")
    cli("evaluate", imported, "--iw-k", 5, "--iw-images", 20, "--data-dir", mnist_dir, "--quiet")
    metrics = json.loads((imported / "metrics.json").read_text())
    assert metrics["latent_dim"] == 2
    cli("report", imported, "--no-evaluate")
    assert "<html" in (imported / "report.html").read_text().lower()
    resume = subprocess.run([sys.executable, "-m", "vae_core.cli", "run", "--run-dir",
                             str(imported), "--resume", "--data-dir", str(mnist_dir)],
                            capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert resume.returncode == 2 and "holds no optimizer state, so it cannot be resumed" in \
        resume.stderr and "Traceback" not in resume.stderr


def test_save_model_refuses_to_replace_a_different_model_in_the_workflow(main_run, tmp_path):
    folder = copy_workflow("VAE_MNIST", tmp_path)
    shutil.copy(main_run.folder / "data" / "vae_mnist_model.pt", folder / "data")
    save = main_run.nodes[main_run.node("Save Model")]
    record = pickle.loads(main_run.out("Train VAE", 2))
    other = {**record, "model": {k: v + 1 for k, v in record["model"].items()}}
    kept = (folder / "data" / "vae_mnist_model.pt").read_bytes()
    with pytest.raises(NodeExecutionError, match=r"^Execute failed: CheckpointError: .* already "
                       "holds a different model .*overwrite_model to 1"):
        run_script_isolated(node_script(save), workflow_dir=folder,
                            flow_variables=main_run.variables,
                            input_objects=[pickle.dumps(other)], n_out_tables=1)
    assert (folder / "data" / "vae_mnist_model.pt").read_bytes() == kept
    res = run_script_isolated(node_script(save), workflow_dir=folder,
                              flow_variables={**main_run.variables, "overwrite_model": 1},
                              input_objects=[pickle.dumps(other)], n_out_tables=1)
    assert _df(res.tables[0])["status"].tolist() == ["replaced"]


# ----------------------------------------------------------------------------- failures
def test_bad_workflow_variable_fails_the_node_with_one_clear_message(tmp_path):
    folder = copy_workflow("VAE_MNIST", tmp_path)
    with pytest.raises(NodeExecutionError) as err:
        execute(folder, ["-workflow.variable=epochs,abc,String"], tmp_path)
    message = str(err.value)
    assert message.startswith("Execute failed: ConfigError: epochs must be an integer, got 'abc'")
    assert "Traceback" not in message and "-workflow.variable" in message


def test_wrong_inputs_fail_the_node_with_one_clear_message(main_run):
    nodes = {n.label: n for n in main_run.nodes.values() if "nodeAnnotation" in n.settings}
    model = main_run.out("Train VAE", 2)
    latent = main_run.out("Encode")
    small = Table.from_pandas(_df(latent).drop(columns="z2"))
    cases = [
        ("Generate", [pickle.dumps({"a": 1})], [],
         "VAEError: The model input must be the model from a Train VAE or Load Model node"),
        ("Decode", [model], [small], "TableError: The model has latent size 2"),
        ("Encode", [model], [latent], "TableError: The input table lacks 784 of the 784 pixel"),
        ("Train VAE", [], [latent, latent], "TableError: The training table (input 1) lacks"),
    ]
    for label, objects, tables, message in cases:
        node = nodes[label]
        with pytest.raises(NodeExecutionError) as err:
            run_script_isolated(node_script(node), workflow_dir=main_run.folder,
                                flow_variables=main_run.variables, input_objects=objects,
                                input_tables=tables, n_out_tables=node.outputs.count("table"),
                                n_out_images=node.outputs.count("image"),
                                n_out_objects=node.outputs.count("object"))
        assert str(err.value).startswith(f"Execute failed: {message}"), str(err.value)
        assert "Traceback" not in str(err.value)


def test_load_model_without_a_saved_model_says_what_to_do(tmp_path, mnist_dir):
    folder = copy_workflow("VAE_MNIST_apply", tmp_path)
    _, nodes, _ = load_workflow(folder)
    load = next(n for n in nodes.values() if n.label == "Load Model")
    with pytest.raises(NodeExecutionError, match=r"CheckpointError: Model file .*VAE_MNIST/data/"
                       r"vae_mnist_model.pt does not exist. Run the workflow that saves"):
        run_script_isolated(node_script(load), workflow_dir=folder,
                            flow_variables=workflow_variables(parse(folder / "workflow.knime")),
                            n_out_tables=1, n_out_objects=1)


# ----------------------------------------------------------------------------- legacy
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
    assert np.isfinite(loss["test_loss"]).all() and loss["train_images"].tolist() == [300]
    assert list(run.checked_views.values()) == [["epoch", "train_loss", "test_loss"]]


# ----------------------------------------------------------------------------- experiments
def test_experiments_workflow_runs_the_grid_and_keeps_finished_configurations(mnist_dir,
                                                                              tmp_path):
    folder = copy_workflow("VAE_MNIST_experiments", tmp_path)
    small = ["-workflow.variable=latent_dims,2,String", '-workflow.variable=betas,"1,4",String',
             "-workflow.variable=epochs,1,int", "-workflow.variable=train_limit,300,int",
             "-workflow.variable=eval_limit,100,int", "-workflow.variable=batch_size,100,int",
             "-workflow.variable=device,cpu,String", "-workflow.variable=iw_k,3,int",
             "-workflow.variable=iw_images,10,int",
             f"-workflow.variable=data_dir,{mnist_dir},String"]
    run = execute(folder, small, tmp_path)
    node = run.node("Run experiments")
    exp = _df(run.outputs[node][0])
    assert exp["config"].tolist() == ["z2_beta1", "z2_beta4"]
    assert exp["latent"].tolist() == ["z=2", "z=2"] and (exp["epochs"] == 1).all()
    claims = _df(run.outputs[node][1])
    assert set(claims["kind"]) == {"claim", "target"} and claims["verdict"].notna().all()
    assert all(png.startswith(PNG) for png in run.outputs[node][2:5])
    assert run.pushed[node] == {"sweep_trained": 2, "sweep_kept": 0}
    views = {run.nodes[n].label: c for n, c in run.checked_views.items()}
    assert views["Reconstruction vs KL"] == ["kl", "recon", "latent"]
    assert (folder / "data" / "sweep" / "experiments.csv").is_file()
    # executing again (after a cancel, a crash, or to add a β) keeps what is finished
    again = execute(folder, [a.replace('"1,4"', '"1,4,2"') for a in small], tmp_path)
    assert again.pushed[node] == {"sweep_trained": 1, "sweep_kept": 2}
    assert _df(again.outputs[node][0])["config"].tolist() == ["z2_beta1", "z2_beta4",
                                                             "z2_beta2"]  # the grid's order
