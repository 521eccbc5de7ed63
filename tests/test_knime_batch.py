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

from knime_workflow import batch  # noqa: E402

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
                   "-workflow.variable=epochs,5,int", "-workflow.variable=beta,0.5,double",
                   '-workflow.variable=data_dir,"/d,1",String',
                   f"-workflow.variable=model_path,{Path.cwd() / 'vae_mnist_model.pt'},String",
                   "-vmargs", "-Xmx4g"]
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
    ({"epoch": "5"}, "Unknown workflow variable 'epoch'"),
    ({"epochs": "abc"}, "epochs must be an integer, got 'abc'"),
    ({"beta": "x"}, "beta must be a number"),
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
    assert "-workflow.variable=epochs,3,int" in args and "-failonloaderror" in args


def test_batch_shell_wrapper_dry_run():

    proc = subprocess.run([str(REPO / "scripts" / "knime-batch"), "--dry-run", "--var",
                           "epochs=2"], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert "-application org.knime.product.KNIME_BATCH_APPLICATION" in proc.stderr
    assert f"-workflowFile={OUT / 'VAE_MNIST.knwf'}" in proc.stderr
    assert "-workflow.variable=epochs,2,int" in proc.stderr
