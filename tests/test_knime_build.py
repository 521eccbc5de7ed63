"""The workflow builder (knime_workflow/build.py): deterministic builds and ``--check``, what git
tracks, spec errors, KNIME's string escaping in settings.xml, and the .epf preference file.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "knime_double"))  # test-only helpers
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # knime_workflow/ is not an installed package

from knime_files import knime_unescape, parse  # noqa: E402

from knime_workflow import build, knime_xml, spec  # noqa: E402

OUT = REPO / "knime_workflow"


# ----------------------------------------------------------------------------- builder
def test_committed_workflow_is_up_to_date():
    """Every tracked generated file, the .knwf archives included, equals a fresh build byte
    for byte."""
    assert build.differences() == []
    assert build.main(["--check"]) == 0


def _git(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=REPO, input=stdin, capture_output=True, text=True,
                          timeout=60)
    if proc.returncode == 128:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    return proc


def test_git_tracks_the_reviewable_files_and_ignores_the_bundles():
    """workflow.knime, settings.xml, the .knwf archives are in every clone; the bundled copies
    of vae_core are a local build output, never committed."""
    outputs = [f"knime_workflow/{p}" for p in build.expected_outputs()]
    tracked = [p for p in outputs if build.is_tracked_output(p.removeprefix("knime_workflow/"))]
    bundles = [p for p in outputs if p not in tracked]
    assert bundles and all("/data/vae_core/" in p for p in bundles)
    ignored = _git("check-ignore", "--no-index", "--stdin", stdin="\n".join(outputs)).stdout.split("\n")
    assert sorted(filter(None, ignored)) == sorted(bundles)
    in_git = set(_git("ls-files", "knime_workflow").stdout.split("\n")) - {""}
    generated = {p for p in in_git if p.split("/")[1] in
                 {*(wf.name for wf in spec.WORKFLOWS), *(f"{wf.name}.knwf" for wf in spec.WORKFLOWS),
                  build.SAMPLE_EPF}}
    assert generated == set(tracked)
    assert not [p for p in in_git if "/data/" in p]


def test_build_is_deterministic(tmp_path):
    build.build(out_dir=tmp_path / "a")
    build.build(out_dir=tmp_path / "b")
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*")
         if p.is_file()}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*")
         if p.is_file()}
    assert a == b and len(a) == len(build.expected_outputs())


def test_check_reports_what_differs_in_the_committed_files(tmp_path):
    out = tmp_path / "knime_workflow"
    build.build(out_dir=out)
    settings = out / "VAE_MNIST" / "Train VAE (#2)" / "Python Script (#4)" / "settings.xml"
    settings.write_bytes(settings.read_bytes().replace(b"train_step", b"train_stop"))
    (out / "VAE_MNIST_legacy.knwf").write_bytes(b"not a zip")
    (out / "VAE_MNIST_legacy" / "workflow.knime").unlink()
    assert sorted(build.differences(out_dir=out, root=REPO)) == sorted([
        "out of date: knime_workflow/VAE_MNIST/Train VAE (#2)/Python Script (#4)/settings.xml",
        "out of date: knime_workflow/VAE_MNIST_legacy.knwf",
        "missing: knime_workflow/VAE_MNIST_legacy/workflow.knime"])
    build.build(out_dir=out, root=REPO)
    assert build.differences(out_dir=out, root=REPO) == []


def test_a_knwf_deflated_instead_of_stored_is_out_of_date(tmp_path):
    """Byte for byte: an archive with the same entries but other bytes is not the build's."""
    out = tmp_path / "knime_workflow"
    build.build(out_dir=out)
    knwf = out / "VAE_MNIST.knwf"
    with zipfile.ZipFile(io.BytesIO(knwf.read_bytes())) as zf:
        entries = [(i, zf.read(i)) for i in zf.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    knwf.write_bytes(buffer.getvalue())
    assert build.differences(out_dir=out, root=REPO) == ["out of date: knime_workflow/VAE_MNIST.knwf"]


def test_build_keeps_the_users_files_and_refreshes_the_bundle(tmp_path):
    """A model saved into a workflow's data area, KNIME's lock and executed state are the
    user's: building never deletes them. Only a bundled module vae_core no longer has goes."""
    out = tmp_path / "knime_workflow"
    build.build(out_dir=out)
    node = out / "VAE_MNIST" / "Train VAE (#2)" / "Python Script (#4)"
    users = {out / "VAE_MNIST" / "data" / "vae_mnist_model.pt": b"model",
             out / "VAE_MNIST" / ".knimeLock": b"",
             node / "port_1" / "data.zip": b"x",
             out / "VAE_MNIST" / "data" / "sweep" / "experiments.csv": b"a,b\n"}
    for path, data in users.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    bundled = out / "VAE_MNIST_apply" / "data" / "vae_core"
    (bundled / "nodes" / "steps.py").write_text("# edited\n")
    (bundled / "old_module.py").write_text("# gone from vae_core\n")
    assert build.differences(out_dir=out, root=REPO) == []  # none of them is tracked
    changes = build.build(out_dir=out, root=REPO)
    assert sorted(changes) == ["removed VAE_MNIST_apply/data/vae_core/old_module.py",
                               "wrote VAE_MNIST_apply/data/vae_core/nodes/steps.py"]
    assert {p: p.read_bytes() for p in users} == users
    fresh_steps = (REPO / "vae_core" / "nodes" / "steps.py").read_bytes()
    assert (bundled / "nodes" / "steps.py").read_bytes() == fresh_steps


def test_spec_errors_are_caught():
    bad = spec.Workflow("X", "", spec.VARIABLES, spec.MAIN.nodes,
                        spec.MAIN.links + (spec.Link(7, "table 1", 4, "object 1"),))
    with pytest.raises(build.SpecError, match="exactly one connection"):
        build.validate(bad)
    wrong_port = spec.Workflow("X", "", spec.VARIABLES, spec.MAIN.nodes,
                               (spec.Link(2, "image 3", 3, "table 1"),))
    with pytest.raises(build.SpecError, match="no port 'image 3'"):
        build.validate(wrong_port)


# ----------------------------------------------------------------------------- escaping
@pytest.mark.parametrize("raw, escaped", [
    ("a\nb", "a%%00010b"),
    ("\t\r", "%%00009%%00013"),
    ("%%00010", "%%00037%00010"),
    ("100%", "100%"),
    ("50%%", "50%%00037%"),
    ("β→z", "β→z"),
    ("\ue000", "%%57344"),
    ("😀", "%%55357%%56832"),
])
def test_knime_escape(raw, escaped):
    assert knime_xml.knime_escape(raw) == escaped
    assert knime_unescape(escaped) == raw


@given(st.text())
def test_any_script_survives_the_settings_xml(text):
    """Builder escaping + XML + KNIME's unescape (the test's own) give back the exact text."""
    root = knime_xml.config("settings.xml", knime_xml.config(
        "model", knime_xml.string("script", text), knime_xml.string("python3_command", "")))
    assert parse("<generated>", knime_xml.render(root))["model"]["script"] == ("xstring", text)


def test_embedded_script_uses_knime_escaping_in_the_file():
    raw = (OUT / "VAE_MNIST" / "Train VAE (#2)" / "Python Script (#4)" / "settings.xml").read_text()
    line = next(ln for ln in raw.splitlines() if 'key="script"' in ln)
    assert "%%00010" in line and "\n" not in line.strip() and "&quot;Train VAE&quot;" in line


# ----------------------------------------------------------------------------- .epf
def test_epf_for_a_user_environment(tmp_path):
    text = build.epf_text("/home/me/miniforge3/envs/vae-mnist-knime/")
    assert "/instance/org.knime.conda/condaDirectoryPath=/home/me/miniforge3\n" in text
    assert ("/instance/org.knime.python3.scripting.nodes/python3CondaEnvironmentDirectoryPath="
            "/home/me/miniforge3/envs/vae-mnist-knime\n") in text
    win = build.epf_text(r"C:\Users\me\miniforge3\envs\vae")
    assert r"condaDirectoryPath=C:\\Users\\me\\miniforge3" in win
    assert "condaDirectoryPath" not in build.epf_text("/opt/myenv")  # not <conda>/envs/<name>
    out = tmp_path / "mine.epf"
    assert build.main(["--epf", "/opt/conda/envs/x", "-o", str(out)]) == 0
    assert "python3CondaEnvironmentDirectoryPath=/opt/conda/envs/x" in out.read_text()


def test_epf_for_a_venv_uses_knimes_manual_keys(tmp_path):
    """The pip route: KNIME's Manual environment type with the venv's Python (keys of
    knime-python's and knime-python-legacy's ManualEnvironmentsConfig at 5.5.3)."""
    out = tmp_path / "venv.epf"
    assert build.main(["--epf-python", "/home/me/env/bin/python", "-o", str(out)]) == 0
    lines = [ln for ln in out.read_text().splitlines() if ln.startswith("/instance/")]
    assert lines == ["/instance/org.knime.python3.scripting.nodes/pythonEnvironmentType=manual",
                     "/instance/org.knime.python3.scripting.nodes/python3Path=/home/me/env/bin/python",
                     "/instance/org.knime.python2/pythonEnvironmentType=manual",
                     "/instance/org.knime.python2/python3Path=/home/me/env/bin/python"]
    win = build.manual_epf_text(r"C:\Users\me\env\Scripts\python.exe")
    assert r"python3Path=C:\\Users\\me\\env\\Scripts\\python.exe" in win
