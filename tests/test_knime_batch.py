"""environment.yml against pyproject.toml, and the KNIME batch wrapper (knime_workflow/batch.py
and its shell script).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # knime_workflow/ is not an installed package

from knime_workflow import batch, spec  # noqa: E402
from knime_workflow.component import fields, option_key  # noqa: E402

OUT = REPO / "knime_workflow"


# ----------------------------------------------------------------------------- environment
def _simple_yaml(text: str) -> dict:
    """Just enough YAML for environment.yml: top-level keys, lists, one nested pip list."""
    data: dict = {}
    key = None
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            key, _, rest = line.partition(":")
            data[key] = rest.strip() or []
        elif line.strip().startswith("- pip:"):
            data[key].append({"pip": []})
        elif line.startswith("      - "):
            data[key][-1]["pip"].append(line.strip()[2:])
        else:
            data[key].append(line.strip()[2:])
    return data


def test_environment_yml_matches_pyproject():
    env = _simple_yaml((REPO / "environment.yml").read_text())
    assert env["channels"] == ["knime", "conda-forge"]
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in deps and "knime-python-base=5.5" in deps and "pip" in deps
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # torch and torchvision come from PyPI as a matching pair (tests/test_versions.py checks
    # that every bound equals pyproject's)
    assert [re.split(r"[=<>]", d)[0] for d in pip] == ["torch", "torchvision"]  # no -e .
    names = {re.split(r"[=<>]", d)[0] for d in deps + pip}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        name = re.split(r"[<>=!~ \[]", req)[0].lower()
        assert name in names, f"{name} missing from environment.yml"
    assert not [n for n in names if n == "knime"], "never install a package named knime"


# ----------------------------------------------------------------------------- batch
def _fake_knime(folder: Path) -> Path:
    exe = folder / "knime"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def _option(name: str, text: str) -> str:
    """The -option the wrapper writes for a field of the Train VAE dialog."""
    field = next(f for f in fields(spec.TRAIN_VAE) if f.label == name)
    key, kind = option_key(field)
    return f"-option=2,{key},{text},{kind}"


def test_batch_command(tmp_path):
    knwf = OUT / "VAE_MNIST.knwf"
    prefs = tmp_path / "p.epf"
    prefs.write_text("x")
    cmd = batch.build_command(Path("/opt/knime/knime"), knwf,
                              {"epochs": "5", "beta": "0.5", "data_dir": "/d,1"},
                              preferences=prefs, workspace=tmp_path / "ws", vmargs=["-Xmx4g"])
    assert cmd == ["/opt/knime/knime", "-nosplash", "-consoleLog", "--launcher.suppressErrors",
                   "-application", "org.knime.product.KNIME_BATCH_APPLICATION",
                   "-data", str((tmp_path / "ws").resolve()),
                   f"-workflowFile={knwf}", "-reset", "-nosave", "-failonloaderror",
                   f"-preferences={prefs.resolve()}",
                   '-workflow.variable=data_dir,"/d,1",String',
                   f"-workflow.variable=model_path,{Path.cwd() / 'vae_mnist_model.pt'},String",
                   _option("epochs", "5"), _option("beta", "0.5"), "-vmargs", "-Xmx4g"]
    assert _option("epochs", "5") == "-option=2,epochs-14/integer,5,int"
    folder_cmd = batch.build_command(Path("knime"), OUT / "VAE_MNIST", {})
    assert f"-workflowDir={OUT / 'VAE_MNIST'}" in folder_cmd and "-vmargs" not in folder_cmd
    assert not any("model_path" in arg for arg in folder_cmd)  # the folder keeps its data area


def _model_path(cmd: list[str]) -> str:
    (arg,) = [a for a in cmd if a.startswith("-workflow.variable=model_path,")]
    return arg.removeprefix("-workflow.variable=model_path,").removesuffix(",String")


def test_a_knwf_run_keeps_its_model_outside_the_temporary_copy(tmp_path, monkeypatch):
    """KNIME deletes the unpacked .knwf at exit (BatchExecutor): the main workflow's run saves
    its model to an absolute path, by default ./vae_mnist_model.pt, and the apply workflow's
    run reads it from there."""
    monkeypatch.chdir(tmp_path)
    main = batch.build_command(Path("knime"), OUT / "VAE_MNIST.knwf", {})
    assert _model_path(main) == str(tmp_path / "vae_mnist_model.pt")
    chosen = batch.build_command(Path("knime"), OUT / "VAE_MNIST.knwf", {},
                                 model_file=Path("models/m.pt"))
    assert _model_path(chosen) == str(tmp_path / "models" / "m.pt")
    with pytest.raises(batch.BatchError, match=r"No model at .*vae_mnist_model.pt for "
                       r"VAE_MNIST_apply's Load Model. Run VAE_MNIST.knwf first"):
        batch.build_command(Path("knime"), OUT / "VAE_MNIST_apply.knwf", {})
    (tmp_path / "vae_mnist_model.pt").write_bytes(b"saved by the main run")
    apply = batch.build_command(Path("knime"), OUT / "VAE_MNIST_apply.knwf", {})
    assert _model_path(apply) == _model_path(main)


@pytest.mark.parametrize("workflow, values, model_file, message", [
    ("VAE_MNIST.knwf", {"model_path": "vae_mnist_model.pt"}, None,
     "model_path 'vae_mnist_model.pt' is relative: a .knwf batch run unpacks"),
    ("VAE_MNIST.knwf", {"model_path": "/abs/m.pt"}, Path("m.pt"),
     "--model-file or --var model_path, not both"),
    ("VAE_MNIST_legacy.knwf", {}, Path("m.pt"), "neither saves nor loads a model"),
])
def test_batch_model_file_mistakes_are_refused(workflow, values, model_file, message):
    with pytest.raises(batch.BatchError, match=message):
        batch.build_command(Path("knime"), OUT / workflow, values, model_file=model_file)


@pytest.mark.parametrize("values, message", [
    ({"epoch": "5"}, "Unknown setting 'epoch' for VAE_MNIST. Workflow variables: data_dir, "
                     "model_path, overwrite_model; dialog fields: latent_dim, hidden_dim"),
    ({"epochs": "abc"}, "epochs must be an integer >= 1, got 'abc'"),
    ({"epochs": "0"}, "epochs must be an integer >= 1, got '0'"),
    ({"beta": "x"}, "beta must be a number >= 0"),
    ({"lr_schedule": "linear"}, r"lr_schedule must be one of \('constant', 'cosine'\)"),
    ({"binarize": "maybe"}, "binarize must be true or false"),
    ({"train_limit": "-3"}, r"train_limit must be 0 \(no limit\) or an integer >= 1"),
])
def test_batch_rejects_bad_variables(values, message):
    with pytest.raises(batch.BatchError, match=message):
        batch.build_command(Path("knime"), OUT / "VAE_MNIST.knwf", values)


def test_batch_types_variables_by_the_chosen_workflow(tmp_path):
    model = tmp_path / "model.pt"
    model.write_bytes(b"a model")
    apply_cmd = batch.build_command(Path("knime"), OUT / "VAE_MNIST_apply.knwf",
                                    {"model_path": str(model), "eval_limit": "100"})
    assert f"-workflow.variable=model_path,{model},String" in apply_cmd
    assert "-workflow.variable=eval_limit,100,int" in apply_cmd
    with pytest.raises(batch.BatchError, match="Unknown workflow variable 'epochs'. Known: seed"):
        batch.build_command(Path("knime"), OUT / "VAE_MNIST_apply.knwf", {"epochs": "5"})
    with pytest.raises(batch.BatchError, match="Unknown workflow variable 'model_path'"):
        batch.build_command(Path("knime"), OUT / "VAE_MNIST_legacy", {"model_path": "x"})


def test_batch_finds_knime_or_says_how(tmp_path):
    exe = _fake_knime(tmp_path)
    assert batch.find_knime(str(tmp_path), env={}) == exe
    assert batch.find_knime(None, env={"KNIME_HOME": str(tmp_path)}) == exe
    assert batch.find_knime(None, env={"PATH": str(tmp_path)}) == exe
    with pytest.raises(batch.BatchError, match="KNIME not found .* set KNIME_HOME"):
        batch.find_knime(None, env={"PATH": str(tmp_path / "none")})
    assert batch.main(["--knime", str(tmp_path / "nope")]) == 2


def test_batch_main_runs_knime_and_returns_its_exit_code(tmp_path, capsys):
    exe = tmp_path / "knime"
    exe.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\nexit 4\n")
    exe.chmod(0o755)
    code = batch.main(["--knime", str(exe), "--var", "epochs=3",
                       "--workspace", str(tmp_path / "ws")])
    assert code == 4 and "a node failed" in capsys.readouterr().err
    args = (tmp_path / "args").read_text()
    assert _option("epochs", "3") in args and "-failonloaderror" in args


def test_batch_shell_wrapper_dry_run():

    proc = subprocess.run([str(REPO / "scripts" / "knime-batch"), "--dry-run", "--var",
                           "epochs=2"], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert "-application org.knime.product.KNIME_BATCH_APPLICATION" in proc.stderr
    assert f"-workflowFile={OUT / 'VAE_MNIST.knwf'}" in proc.stderr
    assert _option("epochs", "2") in proc.stderr


# ----------------------------------------------------------------------------- KNIME's parsing
def test_the_wrappers_dialog_values_reach_the_fields_by_knimes_rules(tmp_path):
    """The wrapper's command read with BatchExecutor's rules (knime_double/knime_batch.py:
    split at '=', splitOption's first/second/last comma, setNodeOptions' id path and name path)
    sets the committed component's dialog values; its Configuration nodes then push exactly
    those values, and the training settings they make are the ones asked for."""
    sys.path.insert(0, str(REPO / "tests" / "knime_double"))
    from knime_batch import apply_option, configuration_push, parse_args
    from knime_files import parse

    from vae_core.config import TrainConfig
    from vae_core.nodes.steps import params_from_flow_variables

    wanted = {"latent_dim": "3", "beta": "2.5", "binarize": "yes", "lr_schedule": "Cosine",
              "precision": "bf16", "train_limit": "", "eval_limit": "700", "device": "cpu"}
    cmd = batch.build_command(Path("knime"), OUT / "VAE_MNIST", {**wanted, "data_dir": "/a,b"})
    variables, options = parse_args(cmd)
    assert variables == {"data_dir": "/a,b"}  # the quotes are the tokenizer's
    assert {o.node_ids for o in options} == {(2,)} and len(options) == len(wanted)
    folder = OUT / "VAE_MNIST" / "Train VAE (#2)"
    component = parse(folder / "settings.xml")
    for option in options:
        assert apply_option({2: component}, {2: False}, option)
    pushed = {}
    for path in folder.glob("*Configuration (#*)/settings.xml"):
        node_id = int(path.parent.name.rsplit("#", 1)[1][:-1])
        pushed.update(configuration_push(parse(path), component["model"], node_id))
    assert (pushed["binarize"], pushed["lr_schedule"], pushed["train_limit"]) == (True, "cosine", 0)
    config = params_from_flow_variables(pushed).config
    assert config == TrainConfig(latent_dim=3, beta=2.5, binarize=True, lr_schedule="cosine",
                                 precision="bf16", eval_limit=700, device="cpu")


def test_knimes_option_rules_as_the_wrapper_relies_on_them():
    """What BatchExecutor does with -option (analytics-platform/5.5.3): the value is all
    between the name and the LAST comma, unquoted; fewer than three commas is refused; a
    node id path into a component reaches nothing (only metanodes are walked), so the
    wrapper sets the component's own settings; a name path through a missing config fails."""
    sys.path.insert(0, str(REPO / "tests" / "knime_double"))
    from knime_batch import BatchArgumentError, Option, apply_option, parse_args, split_option

    assert split_option("2,note-9/string,a,b,c,String") == ("2", "note-9/string", "a,b,c",
                                                             "String")
    for bad in ("2,epochs-14/integer,5", "2,epochs"):
        with pytest.raises(BatchArgumentError, match="Couldn't parse -option"):
            parse_args([f"-option={bad}"])
    with pytest.raises(BatchArgumentError):
        parse_args(["-option=2/x,epochs-14/integer,5,int"])  # Integer.parseInt
    settings = {2: {"model": {"epochs-14": {"integer": ("xint", "30")}}}}
    assert not apply_option(settings, {2: False}, Option((2, 14), "integer", "5", "int"))
    assert settings[2]["model"]["epochs-14"]["integer"] == ("xint", "30")
    with pytest.raises(BatchArgumentError, match="no config for key 'epochs-13'"):
        apply_option(settings, {2: False}, Option((2,), "epochs-13/integer", "5", "int"))
    assert apply_option(settings, {2: False}, Option((2,), "epochs-14/integer", "5", "int"))
    assert settings[2]["model"]["epochs-14"]["integer"] == ("xint", "5")
    assert parse_args(['-workflow.variable=a,"x,y",String', "-workflow.variable=b,2,int"])[0] \
        == {"a": "x,y", "b": 2}
