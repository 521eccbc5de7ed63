"""The Train VAE component of VAE_MNIST: its files against real KNIME files, its dialog against
the settings table, and a new row of the table as a new dialog field.

Real files READ from ../shared/knime/reference at test time (skipped when absent). Key trees
verified in KNIME 5.5-saved files that ../shared does not hold were read there and are encoded
below (never copied), each with its source:
  - JS55 = knime/knime-js-base @ analytics-platform/5.5.3, org.knime.js.tests/src/org/knime/js/
    base/node/configuration/: input/bool/booleanConfigurationComponentDialogTest/Component wi
    (#2)/Boolean Configuration (#3)/settings.xml; selection/single/
    singleSelectionConfigurationComponentDialogTest/Component (#6)/Single Selection
    Configuration (#3)/settings.xml; input/dbl/doubleConfigurationComponentDialogTest/
    Component (#2)/settings.xml (a component's dialog values); input/integer/
    integerConfigurationComponentDialogTest/Component (#2)/Component Input (#1), Component
    Output (#2)/settings.xml (no ports).
  - CORE55 = knime/knime-core @ analytics-platform/5.5.3, org.knime.core.workflow.tests/src/org/
    knime/core/node/workflow/bugAP21890_UnsetVariablesOnReset/Component (#22)/: Component Input
    (#1)/settings.xml (ports), component-metadata.xml.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "knime_double"))  # test-only helpers
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from knime_batch import configuration_push  # noqa: E402
from knime_files import array_values, parse, shape, value  # noqa: E402

from knime_workflow import batch, build, spec  # noqa: E402
from knime_workflow.component import fields, option_key  # noqa: E402
from vae_core.config import OPTIMISATION, RUNTIME, SETTINGS, Setting, TrainConfig  # noqa: E402

OUT = REPO / "knime_workflow"
COMPONENT = OUT / "VAE_MNIST" / "Train VAE (#2)"
REFERENCE = REPO.parent / "shared" / "knime" / "reference"
R58 = "danieltomasz_cordis-knime-elt_5.8.0"
R41 = "knime-core_4.1_enhAP12286_ExternalConfiguration"
R532 = "knime-core_5.3.2_bugAP21890_UnsetVariablesOnReset"
QUICKFORMS = "org.knime.js.base.node.configuration."
FIELD_HEAD = [("hideInDialog", "xboolean"), ("parameterName", "xstring"), ("label", "xstring"),
              ("description", "xstring"), ("required", "xboolean"),
              ("flowVariableName", "xstring")]
# JS55: the model key trees of Boolean and Single Selection Configuration in KNIME 5.5
BOOLEAN_55 = [("defaultValue",), ("defaultValue", "boolean"), *[(k,) for k, _ in FIELD_HEAD],
              ("pushIntVar",)]
SELECTION_55 = [("defaultValue",), ("defaultValue", "variable_value"),
                *[(k,) for k, _ in FIELD_HEAD], ("possible_choices",), ("type",),
                ("limit_number_visible_options",), ("number_visible_options",)]
# JS55 / CORE55: Component Input / Output settings.xml (top keys, model's key tree)
IN_OUT_KEYS = ["node_file", "flow_stack", "internal_node_subsettings", "model",
               "customDescription", "state", "isDeletable", "factory", "node-name",
               "node-bundle-name", "node-bundle-symbolic-name", "node-bundle-vendor",
               "node-bundle-version", "node-feature-name", "node-feature-symbolic-name",
               "node-feature-vendor", "node-feature-version", "factory-id-uniquifier",
               "factory_settings", "name", "hasContent", "isInactive", "ports", "filestores"]
FILTER = ["filter-type", "included_names", "excluded_names", "enforce_option", "name_pattern"]
IN_OUT_MODEL = ["variable-filter", "variable-prefix", "port-names", "port-descriptions"]


@pytest.fixture(scope="module")
def ref() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"KNIME reference files not found at {REFERENCE} (../shared is absent)")
    return REFERENCE


def configuration_nodes(folder: Path = COMPONENT) -> dict[str, dict]:
    """The component's Configuration nodes' settings, by parameter name."""
    found = {}
    for path in folder.glob("*Configuration (#*)/settings.xml"):
        cfg = parse(path)
        found[value(cfg["model"], "parameterName")] = cfg
    return found


def paths(cfg: dict) -> list[tuple[str, ...]]:
    return [p for p, _ in shape(cfg)]


# ----------------------------------------------------------------------------- vs real files
def test_configuration_nodes_have_the_key_trees_knime_writes(ref):
    integer = parse(ref / R58 / "Integer Configuration (#6)" / "settings.xml")  # 5.8.0
    dbl = parse(ref / R41 / "Double Configuration (#2)" / "settings.xml")  # same tree in JS55
    boolean = parse(ref / R41 / "Boolean Configuration (#7)" / "settings.xml")  # 4.1: no pushIntVar
    drop = {"nodecontainer_message", "variables"}
    nodes = configuration_nodes()
    assert sorted(nodes) == sorted(s.name for s in SETTINGS if s.knime)
    for name, cfg in nodes.items():
        assert [k for k in cfg if k not in drop] == [k for k in integer if k not in drop], name
        assert shape(cfg["nodeAnnotation"]) == shape(integer["nodeAnnotation"])
        for key in ("node-bundle-name", "node-bundle-symbolic-name", "node-feature-name",
                    "node-feature-symbolic-name"):
            assert cfg[key] == integer[key], key
        assert value(cfg, "state") == "CONFIGURED" and list(cfg["ports"]) == ["port_1"]
        factory = value(cfg, "factory")
        if factory.endswith("IntegerDialogNodeFactory"):
            assert shape(cfg["model"]) == shape(integer["model"]), name
        elif factory.endswith("DoubleDialogNodeFactory"):
            assert shape(cfg["model"]) == shape(dbl["model"]), name
        elif factory.endswith("BooleanDialogNodeFactory"):
            assert paths(cfg["model"]) == BOOLEAN_55, name
            assert shape(cfg["model"])[:-1] == shape(boolean["model"])
        else:
            assert factory == QUICKFORMS + "selection.single.SingleSelectionDialogNodeFactory"
            assert paths(cfg["model"]) == SELECTION_55, name
        assert [value(cfg["model"], k) for k in ("parameterName", "flowVariableName")] == [name] * 2


def test_the_component_files_have_the_key_trees_knime_writes(ref):
    theirs = parse(ref / R532 / "Component (#22)" / "settings.xml")
    ours = parse(COMPONENT / "settings.xml")
    assert list(ours) == [k for k in theirs if k != "nodecontainer_message"]
    assert shape(ours["nodeAnnotation"]) == shape(theirs["nodeAnnotation"])
    assert shape(ours["outports"]["outport_0"]) == shape(theirs["inports"]["inport_0"])
    for key in ("workflow-file", "layoutJSON", "configurationLayoutJSON", "hideInWizard",
                "customCSS", "virtual-in-ID", "virtual-out-ID"):
        assert ours[key] == theirs[key], key
    kinds = [value(p["type"], "object_class").rsplit(".", 1)[-1] for p in ours["outports"].values()]
    assert kinds == ["BufferedDataTable", "ImagePortObject", "PickledObjectFileStorePortObject",
                     "BufferedDataTable", "BufferedDataTable"]
    # the dialog values: "<parameterName>-<node id>" holding the value's one key (JS55)
    nodes = {int(p.parent.name.rsplit("#", 1)[1][:-1]): parse(p)["model"]
             for p in COMPONENT.glob("*Configuration (#*)/settings.xml")}
    assert list(ours["model"]) == [f"{value(m, 'parameterName')}-{i}"
                                   for i, m in sorted(nodes.items())]
    for i, model in nodes.items():
        held = ours["model"][f"{value(model, 'parameterName')}-{i}"]
        assert held == model["defaultValue"]  # the dialog starts at the table's default
    inner, theirs_inner = (parse(f / "workflow.knime") for f in (COMPONENT,
                                                                 ref / R532 / "Component (#22)"))
    assert list(inner) == list(theirs_inner) and value(inner, "name") == "Train VAE"
    node_tree = shape(theirs_inner["nodes"]["node_1"])
    assert all(shape(n) == node_tree for n in inner["nodes"].values())
    conn_tree = shape(theirs_inner["connections"]["connection_0"])
    assert all(shape(c) == conn_tree for c in inner["connections"].values())
    outer = parse(OUT / "VAE_MNIST" / "workflow.knime")["nodes"]["node_2"]
    their_outer = parse(ref / R532 / "workflow.knime")["nodes"]["node_22"]
    assert shape(outer) == shape(their_outer)
    assert [value(outer, k) for k in ("node_is_meta", "node_type")] == ["true", "SubNode"]


def test_component_input_and_output_have_knimes_key_trees():
    for name, last in (("Component Input (#1)", "sub-node-description"),
                       ("Component Output (#2)", "allowOutputNodeToCompleteBeforeContent")):
        cfg = parse(COMPONENT / name / "settings.xml")
        assert list(cfg) == IN_OUT_KEYS, name
        assert list(cfg["model"]) == [*IN_OUT_MODEL, last]
        assert list(cfg["model"]["variable-filter"]) == FILTER
        assert value(cfg["model"]["variable-filter"], "enforce_option") == "EnforceExclusion"
        assert array_values(cfg["model"]["variable-filter"]["excluded_names"]) == []
    out = parse(COMPONENT / "Component Output (#2)" / "settings.xml")
    assert array_values(out["model"]["port-names"]) == [p.name for p in spec.TRAIN_VAE.out_ports]
    assert [shape(p) for p in out["factory_settings"].values()] == [
        [(("index",), "xint"), (("type",), "config"), (("type", "object_class"), "xstring")]] * 5


def test_component_metadata_has_the_description_and_the_ports():
    root = ET.parse(COMPONENT / "component-metadata.xml").getroot()
    ns = "{http://www.knime.org/core/node/workflow/metadata/v1.0}"
    assert root.tag == ns + "component-metadata" and root.get("content-type") == "text/plain"
    assert [c.tag.removeprefix(ns) for c in root] == ["last-modified", "description", "in-ports",
                                                      "out-ports"]  # CORE55's order
    assert root.find(ns + "description").text == spec.TRAIN_VAE.description
    ports = root.find(ns + "out-ports")
    assert [(p.get("name"), p.text) for p in ports] == [
        (p.name, p.description) for p in spec.TRAIN_VAE.out_ports]
    assert len(root.find(ns + "in-ports")) == 0


# ----------------------------------------------------------------------------- the dialog
def test_every_field_is_typed_from_the_settings_table():
    nodes = configuration_nodes()
    for s in (s for s in SETTINGS if s.knime):
        model = nodes[s.name]["model"]
        factory = value(nodes[s.name], "factory")
        assert s.help in value(model, "description")
        if s.choices:
            assert array_values(model["possible_choices"]) == list(s.choices)
            assert array_values(model["defaultValue"]["variable_value"]) == [s.default]
        elif s.type is bool:
            assert factory.endswith("BooleanDialogNodeFactory")
            assert value(model, "pushIntVar") == "false"
        else:
            assert factory.endswith("IntegerDialogNodeFactory" if s.type is int
                                    else "DoubleDialogNodeFactory")
            low = 0 if s.optional else (s.minimum if s.minimum is not None else s.above)
            assert value(model, "useMin") == ("true" if low is not None else "false"), s.name
            if low is not None:
                assert float(value(model, "min")) == low
    # what the fields push, unchanged, is exactly the table's defaults
    component_model = parse(COMPONENT / "settings.xml")["model"]
    pushed = {}
    for path in COMPONENT.glob("*Configuration (#*)/settings.xml"):
        node_id = int(path.parent.name.rsplit("#", 1)[1][:-1])
        pushed.update(configuration_push(parse(path), component_model, node_id))
    from vae_core.nodes.steps import params_from_flow_variables

    assert params_from_flow_variables(pushed).config == TrainConfig()
    assert pushed["binarize"] is False and pushed["device (index)"] == 0


def test_a_new_setting_in_the_table_is_a_new_dialog_field(tmp_path, monkeypatch, ref):
    """A row added to the settings table (here a number and a text) becomes a typed field of
    the dialog, settable in batch, with no other edit."""
    new = (Setting(OPTIMISATION, "dropout of the hidden layer", 0.1, minimum=0, below=1,
                   knime=True, name="dropout", type=float),
           Setting(RUNTIME, "a note kept with the run", "none", knime=True, name="note"))
    main = spec.main_workflow((*SETTINGS, *new))
    files = build.workflow_files(main)
    folder = tmp_path / "VAE_MNIST"
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    nodes = configuration_nodes(folder / "Train VAE (#2)")
    assert sorted(nodes) == sorted([*(s.name for s in SETTINGS if s.knime), "dropout", "note"])
    dbl = parse(ref / R41 / "Double Configuration (#2)" / "settings.xml")
    text = parse(ref / R58 / "String Configuration (#3)" / "settings.xml")
    assert shape(nodes["dropout"]["model"]) == shape(dbl["model"])
    assert shape(nodes["note"]["model"]) == shape(text["model"])
    assert [value(nodes["dropout"]["model"], k) for k in ("useMin", "min", "useMax", "max")] == [
        "true", "0.0", "true", "1.0"]
    assert value(nodes["note"]["model"]["defaultValue"], "string") == "none"
    monkeypatch.setattr(spec, "WORKFLOWS", (main, *spec.WORKFLOWS[1:]))
    cmd = batch.build_command(Path("knime"), folder, {"dropout": "0.3", "note": "a,b"})
    dropout_id = next(f.id for f in fields(main.nodes[0]) if f.label == "dropout")
    assert f"-option=2,dropout-{dropout_id}/double,0.3,double" in cmd
    assert f"-option=2,note-{dropout_id + 1}/string,a,b,String" in cmd
    assert option_key(fields(main.nodes[0])[0]) == ("latent_dim-10/integer", "int")
