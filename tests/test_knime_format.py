"""The generated KNIME files follow the format of real KNIME-saved files.

Reference files are READ from ../shared/knime/reference at test time (never copied into the
project); those tests are skipped with a clear reason when that folder is absent. Also: load
rules of workflow.knime (KNIME_FORMAT.md §2.1-2.4, §3) and the .knwf layout. The builder, the
escaping and the .epf: ``test_knime_build.py``; environment.yml and the batch wrapper:
``test_knime_batch.py``.
"""

from __future__ import annotations

import io
import re
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "knime_double"))  # test-only helpers
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # knime_workflow/ is not an installed package

from knime_files import array_values, parse, shape, value  # noqa: E402

from knime_workflow import build, spec  # noqa: E402
from knime_workflow.component import Component  # noqa: E402

OUT = REPO / "knime_workflow"
REFERENCE = REPO.parent / "shared" / "knime" / "reference"
R58 = "danieltomasz_cordis-knime-elt_5.8.0"
R55 = "knime-gateway_5.5_Versions_Extended_CurrentVersion"
PYTHON_SCRIPT = "org.knime.python3.scripting.nodes2.script.PythonScriptNodeFactory"
ALL_FOLDERS = [OUT / wf.name for wf in spec.WORKFLOWS]


@pytest.fixture(scope="module")
def ref() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"KNIME reference files not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


def settings_files(folder: Path, node_name: str) -> list[Path]:
    return sorted(folder.glob(f"{node_name} (#*)/settings.xml"))


def top_keys(cfg: dict, drop: set[str] = frozenset()) -> list[str]:
    return [k for k in cfg if k not in drop]


def same_shape(ours: dict, theirs: dict, key: str) -> None:
    """Same entry type, or the same key tree with the same entry types."""
    a, b = ours[key], theirs[key]
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0], key
    else:
        assert shape(a, (key,)) == shape(b, (key,)), f"key tree of {key} differs"


def check_not_executed(cfg: dict) -> None:
    """Hand-written nodes: CONFIGURED, no content, no port data, no file store (§3.3)."""
    assert value(cfg, "state") == "CONFIGURED"
    assert value(cfg, "hasContent") == "false" and value(cfg, "isInactive") == "false"
    for port in cfg["ports"].values():
        assert port["port_dir_location"] == ("xstring", None)
        assert list(port) == ["index", "port_dir_location"]
    assert cfg["filestores"] == {"file_store_location": ("xstring", None),
                                 "file_store_id": ("xstring", None)}
    assert "internalObjects" not in cfg


# ----------------------------------------------------------------------------- vs reference
def test_python_script_nodes_have_the_key_tree_of_knime_5(ref):
    ref14 = parse(ref / R58 / "Python Script (#14)" / "settings.xml")  # CONFIGURED, 1 in/1 out
    ref5 = parse(ref / R58 / "Python Script (#5)" / "settings.xml")  # has a nodeAnnotation
    optional = {"variables", "nodecontainer_message"}  # flow-variable binding, last error
    files = sorted((OUT / "VAE_MNIST").glob("**/Python Script (#*)/settings.xml"))
    nodes = (*spec.MAIN.nodes, *spec.TRAIN_VAE.nodes)  # Train VAE's too
    assert len(files) == sum(isinstance(n, spec.PythonScript) for n in nodes) == 7
    for path in files:
        ours = parse(path)
        assert top_keys(ours, {"nodeAnnotation"}) == top_keys(ref14, optional), path
        assert list(ours).index("nodeAnnotation") == list(ours).index("model") + 1
        assert list(ref5).index("nodeAnnotation") == list(ref5).index("model") + 1
        same_shape(ours, ref5, "nodeAnnotation")
        for key in top_keys(ref14, optional | {"node_creation_config", "ports"}):
            same_shape(ours, ref14, key)
        assert list(ours["node_creation_config"]) == list(ref14["node_creation_config"])
        ref_port = shape(ref14["node_creation_config"]["Output table"]["port_0"])
        for group in ours["node_creation_config"].values():
            assert list(group) == [f"port_{i}" for i in range(len(group))]
            assert all(shape(p) == ref_port for p in group.values())
        assert ours["model"]["python3_command"] == ("xstring", "")
        assert value(ours, "factory") == PYTHON_SCRIPT
        check_not_executed(ours)
        creation = ours["node_creation_config"]
        n_out = sum(len(creation[g]) for g in ("Output table", "Output image",
                                               "Output object (pickled)"))
        assert list(ours["ports"]) == [f"port_{i}" for i in range(1, n_out + 1)]


@pytest.mark.parametrize("name, ref_path", [
    ("Scatter Plot", f"{R55}/Scatter Plot (#6)/settings.xml"),
    ("Line Plot", f"{R55}/Component (#9)/Line Plot (#7)/settings.xml"),
    ("Table View", f"{R55}/Table View (#4)/settings.xml"),
])
def test_view_nodes_have_the_key_tree_of_knime_5_5(ref, name, ref_path):
    theirs = parse(ref / ref_path)
    files = [p for f in ALL_FOLDERS for p in settings_files(f, name)]
    assert files
    for path in files:
        ours = parse(path)
        # view_variables (settings bound to flow variables) is optional (KNIME_FORMAT.md §3.1)
        extra = {"nodeAnnotation"} | ({"view_variables"} - set(theirs))
        assert top_keys(ours, extra) == top_keys(theirs, {"internalObjects"})
        for key in top_keys(theirs, {"internalObjects"}):
            same_shape(ours, theirs, key)  # model, view (every key and type), ports, ...
        for key in ("factory", "node-name", "node-bundle-symbolic-name",
                    "node-feature-symbolic-name"):
            assert ours[key] == theirs[key]
        check_not_executed(ours)


def test_scatter_plot_values_are_ours(ref):
    files = {int(p.parent.name.split("#")[1].rstrip(")")): p
             for p in settings_files(OUT / "VAE_MNIST", "Scatter Plot")}
    latent, explorer = parse(files[5]), parse(files[10])
    view = latent["view"]
    assert (value(view, "xAxisColumnV3"), value(view, "yAxisColumnV3")) == ("z1", "z2")
    assert view["colorColumnV2"] == {"regularChoice": ("xstring", "digit"),
                                     "specialChoice_Internals": ("xstring", None)}
    assert "view_variables" not in latent and value(view, "useCustomXAxisLabel") == "false"
    view = explorer["view"]
    assert (value(view, "xAxisColumnV3"), value(view, "yAxisColumnV3")) == ("plot_x", "plot_y")
    assert value(view, "useCustomXAxisLabel") == value(view, "useCustomYAxisLabel") == "true"
    # the axis titles come from the variables Encode pushes (format of KNIME_FORMAT.md §3.7)
    bound = explorer["view_variables"]
    assert value(bound, "version") == "V_2019_09_13"
    assert {k: value(v, "used_variable") for k, v in bound["tree"].items()} == {
        "customXAxisLabel": "latent_x_title", "customYAxisLabel": "latent_y_title"}
    assert all(v["exposed_variable"] == ("xstring", None) for v in bound["tree"].values())


def test_table_views_show_existing_columns_and_the_digit_images(ref):
    for folder in ALL_FOLDERS:
        for path in settings_files(folder, "Table View"):
            view = parse(path)["view"]
            manual = view["displayedColumnsV2"]["manualFilter"]
            shown = array_values(manual["manuallySelected"])
            assert shown and value(manual, "includeUnknownColumns") == "false", path
            assert value(view["displayedColumnsV2"], "mode") == "MANUAL"


def test_legacy_python_source_matches_real_legacy_files(ref):
    ref_source = parse(ref / "hfwittmann_3.5.2_legacy_python" / "Python Source (#1)" /
                       "settings.xml")
    ref_script2 = parse(ref / "jonlorentz_4.3.1_legacy_python_script2" / "Python Script (#3)" /
                        "settings.xml")
    (path,) = settings_files(OUT / "VAE_MNIST_legacy", "Python Source")
    ours = parse(path)
    assert top_keys(ours, {"nodeAnnotation"}) == top_keys(ref_source)
    assert ours["factory"] == ref_source["factory"]
    allowed = {**ref_script2["model"], **ref_source["model"]}
    assert set(ref_source["model"]) <= set(ours["model"]) <= set(allowed)
    for key, (kind, _) in ours["model"].items():
        assert kind == allowed[key][0], key
    check_not_executed(ours)


def test_workflow_knime_has_the_structure_of_real_files(ref):
    ref58 = parse(ref / R58 / "workflow.knime")
    ref55 = parse(ref / R55 / "workflow.knime")
    ref41 = parse(ref / "knime-core_4.1_enhAP12286_ExternalConfiguration" / "workflow.knime")
    for folder in ALL_FOLDERS:
        wf = parse(folder / "workflow.knime")
        common = [k for k in wf if k in ref58]
        assert common == [k for k in ref58 if k in wf], "header key order differs from 5.8"
        same_shape(wf, ref58, "authorInformation")
        same_shape(wf, ref58, "workflow_editor_settings")
        ref_node, ref_conn = ref58["nodes"]["node_5"], ref58["connections"]["connection_4"]
        assert all(shape(n) == shape(ref_node) for n in wf["nodes"].values())
        assert all(shape(c) == shape(ref_conn) for c in wf["connections"].values())
        ref_annotation = ref55["annotations"]["annotation_0"]
        assert all(shape(a) == shape(ref_annotation) for a in wf["annotations"].values())
        ref_vars = {value(v, "class"): shape(v) for v in ref41["workflow_variables"].values()}
        for var in wf["workflow_variables"].values():
            cls = value(var, "class")
            if cls in ref_vars:
                assert shape(var) == ref_vars[cls]
            assert var["value"][0] == {"INTEGER": "xint", "DOUBLE": "xdouble",
                                       "STRING": "xstring"}[cls]
        # workflow variables sit before the credentials, as in the 4.1 file
        assert list(wf).index("workflow_variables") < list(wf).index("workflow_credentials")
        assert list(ref41).index("workflow_variables") < list(ref41).index(
            "workflow_credentials")


R532 = "knime-core_5.3.2_bugAP21890_UnsetVariablesOnReset"


def test_every_workflow_uses_the_columnar_backend_as_knime_writes_it(ref):
    """Without a tableBackend entry KNIME 5.5 loads a workflow with the row-based backend
    (WorkflowTableBackendSettings.loadSettingsInModel); KNIME saves the entry after the
    credentials (FileWorkflowPersistor.saveContent), as the real 5.3.2 file has it."""
    theirs = parse(ref / R532 / "workflow.knime")
    for folder in ALL_FOLDERS:
        wf = parse(folder / "workflow.knime")
        assert wf["tableBackend"] == theirs["tableBackend"], folder.name
        assert value(wf["tableBackend"], "class") == "org.knime.core.data.columnar.ColumnarTableBackend"
        keys = list(wf)
        assert keys.index("tableBackend") == keys.index("workflow_credentials") + 1
        assert keys.index("tableBackend") < keys.index("nodes")
        ref_keys = list(theirs)
        assert ref_keys.index("tableBackend") == ref_keys.index("workflow_credentials") + 1


def test_python_script_nodes_use_the_id_knime_5_registers(ref):
    theirs = parse(ref / R58 / "Python Script (#14)" / "settings.xml")
    files = [p for f in ALL_FOLDERS for p in settings_files(f, "Python Script")]
    assert files
    for path in files:
        ours = parse(path)
        assert ours["factory"] == theirs["factory"] == ("xstring", PYTHON_SCRIPT), path
        for key in ("node-name", "node-bundle-symbolic-name", "node-feature-symbolic-name"):
            assert ours[key] == theirs[key], (path, key)


def test_view_bindings_are_written_as_knimes_dialog_writes_them(ref):
    """Each bound setting: used_variable, used_variable_flawed (false), exposed_variable, in
    that order and with those types, as in the real 5.8 file."""
    theirs = parse(ref / R58 / "Python Script (#14)" / "settings.xml")["variables"]
    ref_entry = next(iter(theirs["tree"].values()))
    bound = [parse(p)["view_variables"] for f in ALL_FOLDERS
             for p in settings_files(f, "Scatter Plot") if "view_variables" in parse(p)]
    assert bound
    for tree in bound:
        assert list(tree) == list(theirs) and tree["version"] == theirs["version"]
        for entry in tree["tree"].values():
            assert shape(entry) == shape(ref_entry)
            assert list(entry) == ["used_variable", "used_variable_flawed", "exposed_variable"]
            assert entry["used_variable_flawed"] == ("xboolean", "false")


def test_sample_epf_uses_the_keys_of_knimes_own_file(ref):
    theirs = (ref / "knime-python_workflow-tests_prefs" / "preferences-Linux.epf").read_text()
    ours = (OUT / build.SAMPLE_EPF).read_text()

    def keys(text: str) -> set[str]:
        return {line.split("=", 1)[0] for line in text.splitlines()
                if line.startswith("/instance/org.knime.python3") or "condaDirectory" in line}

    assert keys(ours) == keys(theirs)
    assert ours.splitlines()[0] == "\\!/=" and "file_export_version=3.0" in ours


# ----------------------------------------------------------------------------- load rules
def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3])


@pytest.mark.parametrize("folder", ALL_FOLDERS, ids=lambda p: p.name)
def test_workflow_knime_satisfies_the_load_rules(folder):
    """§2.1-2.4: header that 5.5 loads; every node and connection resolvable."""
    wf = parse(folder / "workflow.knime")
    assert _version(value(wf, "created_by")) <= (5, 5, 0)
    assert value(wf, "created_by") == "5.5.0"  # no qualifier: not newer than any 5.5.0 build
    assert value(wf, "created_by_nightly") == "false"
    assert value(wf, "version") in ("4.1.0", "5.1.0")
    for key in ("workflow_credentials", "nodes", "connections"):
        assert isinstance(wf[key], dict)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}",
                        value(wf["authorInformation"], "authored-when"))
    names = [value(v, "name") for v in wf["workflow_variables"].values()]
    shared = ["hidden_dim", "binarize", "epochs", "batch_size", "learning_rate", "lr_schedule",
              "precision", "seed", "eval_set", "train_limit", "eval_limit", "device", "data_dir"]
    training = ["latent_dim", "hidden_dim", "beta", "binarize", *shared[2:]]
    assert names == {"VAE_MNIST": ["data_dir", "model_path", "overwrite_model"],
                     "VAE_MNIST_legacy": training,
                     "VAE_MNIST_experiments": [
                         *shared, "latent_dims", "betas", "iw_k", "iw_images", "sweep_dir"],
                     "VAE_MNIST_apply": ["seed", "data_dir", "device", "train_limit",
                                         "eval_limit", "eval_set", "model_path",
                                         "unusual_quantile", "score_iw_k", "unusual_rows"],
                     }[folder.name]
    n_in, n_out, ids = {}, {}, []
    for node in wf["nodes"].values():
        nid = int(value(node, "id"))
        ids.append(nid)
        rel = value(node, "node_settings_file")
        settings = parse(folder / rel)
        if value(node, "node_type") == "SubNode":  # a component: its ports are in its settings
            assert value(node, "node_is_meta") == "true"
            name = value(parse(folder / rel.replace("settings.xml", "workflow.knime")), "name")
            assert rel == f"{re.sub(r'[^a-zA-Z0-9 ]', '_', name)[:12].strip()} (#{nid})/settings.xml"
            n_in[nid], n_out[nid] = len(settings["inports"]), len(settings["outports"])
            continue
        assert value(node, "node_type") == "NativeNode" and value(node, "node_is_meta") == "false"
        folder_name = re.sub(r"[^a-zA-Z0-9 ]", "_", value(settings, "node-name"))
        assert rel == f"{folder_name} (#{nid})/settings.xml"
        creation = settings.get("node_creation_config", {})
        if value(settings, "factory") == PYTHON_SCRIPT:
            n_in[nid] = len(creation["Input object (pickled)"]) + len(creation["Input table"])
        else:
            table_view = value(settings, "node-name") == "Table View"  # no creation config
            n_in[nid] = 1 if "Input Table" in creation or table_view else 0
        n_out[nid] = len(settings["ports"])
    assert len(set(ids)) == len(ids)
    fed = []
    for conn in wf["connections"].values():
        src, dst = int(value(conn, "sourceID")), int(value(conn, "destID"))
        sport, dport = int(value(conn, "sourcePort")), int(value(conn, "destPort"))
        assert src != dst and src in n_out and dst in n_in
        assert 1 <= sport <= n_out[src] and 1 <= dport <= n_in[dst]
        fed.append((dst, dport))
    assert sorted(fed) == sorted((n, p) for n in n_in for p in range(1, n_in[n] + 1))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A fresh build of every generated file, bundles included (a clone has no bundles)."""
    out = tmp_path_factory.mktemp("fresh") / "knime_workflow"
    build.build(out_dir=out)
    return out


@pytest.mark.parametrize("wf", spec.WORKFLOWS, ids=lambda w: w.name)
def test_no_data_lock_or_executed_state_is_shipped(wf, fresh):
    folder = fresh / wf.name
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    bundle = [f for f in files if f.startswith("data/")]
    # the data area holds exactly vae_core's modules, nothing else (no model, no __pycache__)
    package = REPO / "vae_core"
    assert bundle == sorted(f"data/vae_core/{p.relative_to(package).as_posix()}"
                            for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    files = [f for f in files if f not in bundle]
    components = {f.split("/")[0] for f in files if f.endswith("/component-metadata.xml")}
    assert components == {f"{c.label} (#{c.id})" for c in wf.nodes if isinstance(c, Component)}
    assert [f for f in files if "/" in f] == [f for f in files if f.endswith("/settings.xml") or (
        f.split("/")[0] in components and f.count("/") == 1
        and f.endswith(("/workflow.knime", "/component-metadata.xml")))]
    assert {f for f in files if "/" not in f} == {"workflow.knime", "workflowset.meta"}
    for path in folder.glob("**/settings.xml"):
        if path.parent.name not in components:  # a component's own: test_knime_component.py
            check_not_executed(parse(path))


@pytest.mark.parametrize("wf", spec.WORKFLOWS, ids=lambda w: w.name)
def test_knwf_has_one_top_folder_and_the_folders_files(wf, fresh):
    data = (OUT / f"{wf.name}.knwf").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert {n.split("/")[0] for n in names} == {wf.name}
        assert names == sorted(names)
        assert not [n for n in names if ".knimeLock" in n or "/port_" in n or n.endswith("/")]
        assert {i.date_time for i in zf.infolist()} == {build.ZIP_TIME}
        folder = fresh / wf.name
        built = {f"{wf.name}/{p.relative_to(folder).as_posix()}": p.read_bytes()
                 for p in folder.rglob("*") if p.is_file()}
        assert {n: zf.read(n) for n in names} == built
        assert f"{wf.name}/data/vae_core/__init__.py" in names  # the archive carries vae_core
