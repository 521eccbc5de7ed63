"""Declared dependency versions are the tested ones, and stored tables round-trip exactly.

`make test` runs this file in two environments (README, "Tested versions"):
- `.venv`: the newest releases pyproject.toml allows;
- `.venv-knime` (`VAE_TEST_ENV=knime-5.5`): built from requirements-knime-5.5.txt, the pip route
  docs/KNIME.md gives KNIME users (KNIME 5.5's Python pins plus this project's floors).
Every bound declared in pyproject.toml or environment.yml must be one of these two, so that no
bound claims a version nothing has run.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement  # pytest itself depends on packaging
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from vae_core.outputs.tables import read_table, write_table

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REQUIREMENTS = ROOT / "requirements-knime-5.5.txt"
BUILD_FLOOR = ROOT / "constraints" / "build-floor.txt"
ENVIRONMENT = ROOT / "environment.yml"

# KNIME Analytics Platform 5.5's Python environment (knime-python-base 5.5) pins these; with
# pandas 3 every KNIME Python node fails ("Data type 'large_string' in column '<RowID>' is not
# supported"), hence pandas<3 in pyproject.toml.
KNIME_55_PYTHON = (3, 11)
KNIME_55_PINS = {"numpy": "1.26.4", "pandas": "2.0.3", "pyarrow": "20.0.0", "pillow": "11.2.1"}
# Test tools: in the test extra without a bound, and in no user's environment.
TEST_TOOLS = {canonicalize_name(r.name) for r in map(
    Requirement, PYPROJECT["project"]["optional-dependencies"]["test"]) if not r.specifier}
IN_KNIME_ENV = os.environ.get("VAE_TEST_ENV") == "knime-5.5"
knime_env_only = pytest.mark.skipif(not IN_KNIME_ENV,
                                    reason="only in .venv-knime (make unit-knime)")


def _requirements(extras: tuple[str, ...] = ("test", "parquet")) -> list[Requirement]:
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def _declared() -> dict[str, SpecifierSet]:
    """Package -> its bounds in pyproject.toml (one entry per package)."""
    out: dict[str, SpecifierSet] = {}
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert out.get(name, req.specifier) == req.specifier, f"{name}: two different bounds"
        out[name] = req.specifier
    return out


def _floors() -> dict[str, Version]:
    return {name: Version(s.version) for name, spec in _declared().items()
            for s in spec if s.operator == ">="}


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{path.name}: {line!r} is not an exact pin"
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def _installed(name: str) -> Version:
    return Version(metadata.version(name))


# ----------------------------------------------------------------------------- pyproject.toml
def test_installed_versions_satisfy_the_declared_bounds():
    for req in _requirements(("test",)):  # what `pip install -e '.[test]'` put here
        have = _installed(req.name)
        assert req.specifier.contains(have, prereleases=True), \
            f"{req.name} {have} is installed, pyproject.toml declares {req}"
    assert sys.version_info[:2] >= (3, 11)
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(
        f"{sys.version_info.major}.{sys.version_info.minor}")


def test_pandas_is_below_3_as_knime_needs():
    assert _installed("pandas") < Version("3")
    assert "<3" in str(_declared()["pandas"])


def test_every_floor_is_pinned_in_the_knime_requirements():
    """The floors are what .venv-knime installs: each `>=` bound equals a pin there."""
    pins = _pins(REQUIREMENTS)
    for name, floor in _floors().items():
        assert name in pins, f"{name}>={floor} is exercised by no test environment"
        assert pins[name] == floor, f"pyproject.toml: {name}>={floor}, requirements: =={pins[name]}"
    for name, version in KNIME_55_PINS.items():
        assert pins[name] == Version(version), f"{REQUIREMENTS.name} must pin KNIME's {name}"
    for name, version in pins.items():  # and every pin is allowed by pyproject.toml
        spec = _declared().get(name)
        assert spec is None or spec.contains(version, prereleases=True), (name, version)


def test_the_requirements_hold_exactly_what_a_knime_user_needs():
    """Every runtime dependency of the project, KNIME 5.5's base pins, torch and torchvision as a
    pair; no vae_core, nothing named knime, no test tool."""
    pins = set(_pins(REQUIREMENTS))
    runtime = {canonicalize_name(r.name) for r in _requirements(())}
    assert runtime <= pins, runtime - pins
    assert {"torch", "torchvision", "pyarrow", "py4j", "markdown"} <= pins
    assert not pins & ({"knime", "vae-mnist-knime"} | TEST_TOOLS)


def test_the_build_floor_is_pinned_for_the_knime_env_build():
    """[build-system] declares setuptools>=77 (PEP 639 licence strings); .venv-knime builds the
    project with exactly that release (--no-build-isolation), so the floor is exercised."""
    (req,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    (spec,) = req.specifier
    assert spec.operator == ">="
    assert _pins(BUILD_FLOOR)[canonicalize_name(req.name)] == Version(spec.version)


@knime_env_only
def test_knime_env_has_no_vae_core_installed():
    """As in a KNIME user's environment (environment.yml): the workflows bring their own.
    Asked from outside the checkout (whose folder pytest puts on sys.path)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import importlib.util as u; print(u.find_spec('vae_core'), u.find_spec('torch') is None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.split() == ["None", "False"]  # no vae_core, but the third-party packages


@knime_env_only
def test_knime_env_runs_knime_55_pins_and_every_floor():
    assert sys.version_info[:2] == KNIME_55_PYTHON
    for name, version in KNIME_55_PINS.items():
        assert _installed(name) == Version(version), f"{name}: KNIME 5.5 ships {version}"
    for name, floor in _floors().items():
        assert _installed(name) == floor, f"{name}>={floor} declared, {_installed(name)} here"
    for name, version in _pins(REQUIREMENTS).items():  # the users' route, exactly
        assert _installed(name) == version, f"{name}: {REQUIREMENTS.name} says {version}"


# ----------------------------------------------------------------------------- environment.yml
def _conda_spec(item: str) -> tuple[str, SpecifierSet]:
    """`pandas>=2.0.3,<3` or `python=3.11` (conda: 3.11.*) -> (name, specifier)."""
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", item.strip())
    name, spec = m.group(1), m.group(2).replace(" ", "")
    if re.fullmatch(r"=[0-9][0-9.]*", spec):
        spec = f"=={spec[1:]}.*"
    return canonicalize_name(name), SpecifierSet(spec)


def _environment() -> tuple[list[str], list[str]]:
    """The conda and the pip entries of environment.yml's dependencies."""
    text = ENVIRONMENT.read_text()
    try:
        import yaml
    except ImportError:  # not a dependency: a line parser is enough for this file
        conda, pip, pip_indent, section = [], [], None, False
        for raw in text.splitlines():
            line = re.sub(r"\s+#.*$|^\s*#.*$", "", raw).rstrip()
            if not line:
                continue
            if not line.startswith((" ", "-")):
                section = line.startswith("dependencies:")
                continue
            m = re.fullmatch(r"(\s*)-\s+(.+)", line)
            if not section or not m:
                continue
            indent, item = len(m.group(1)), m.group(2).strip()
            if pip_indent is not None and indent > pip_indent:
                pip.append(item)
                continue
            pip_indent = indent if item == "pip:" else None
            if item != "pip:":
                conda.append(item)
        return conda, pip
    deps = yaml.safe_load(text)["dependencies"]
    pip = [d for entry in deps if isinstance(entry, dict) for d in entry.get("pip", [])]
    return [d for d in deps if isinstance(d, str)], pip


def test_environment_yml_declares_the_pyproject_bounds_and_no_other():
    conda, pip = _environment()
    # third-party packages only: the workflows bring vae_core in their data area
    assert not [p for p in pip if p.startswith("-") or p.startswith(".") or "vae" in p], pip
    declared = _declared()
    # KNIME's own pins come with knime-python-base=5.5, which is what requirements-knime-5.5.txt
    # reproduces; its Python is 3.11 (checked in .venv-knime above).
    allowed = {"python": SpecifierSet("==3.11.*"), "knime-python-base": SpecifierSet("==5.5.*")}
    seen = {}
    for item in conda + [p for p in pip if not p.startswith("-")]:
        name, spec = _conda_spec(item)
        if name == "pytorch":
            pytest.fail("environment.yml: install torch with pip (the tested PyPI build)")
        seen[name] = spec
        want = allowed.get(name, declared.get(name))
        if str(spec):
            assert want is not None, f"environment.yml bounds {name}, pyproject.toml does not"
            assert spec == want, f"environment.yml: {name}{spec}, pyproject.toml: {name}{want}"
    for req in _requirements(()):  # every runtime dependency, with pyproject's bounds
        name = canonicalize_name(req.name)
        assert name in seen, f"environment.yml lacks {name}"
        assert seen[name] == req.specifier, f"environment.yml: {name}{seen[name]}, want {req}"
    assert {"torch", "torchvision"} <= {_conda_spec(p)[0] for p in pip if not p.startswith("-")}


def test_the_conda_and_the_pip_route_agree():
    """environment.yml (conda) and requirements-knime-5.5.txt (pip) are two routes to one
    environment: the same packages; each pip pin inside the conda bound; KNIME's pins (there
    from knime-python-base=5.5) and Python 3.11 on both."""
    conda, pip = _environment()
    specs = dict(_conda_spec(item) for item in conda + [p for p in pip if not p.startswith("-")])
    assert specs.pop("python") == SpecifierSet("==3.11.*") and KNIME_55_PYTHON == (3, 11)
    assert specs.pop("knime-python-base") == SpecifierSet("==5.5.*")
    specs.pop("pip")
    pins = _pins(REQUIREMENTS)
    assert set(specs) <= set(pins), set(specs) - set(pins)
    for name, spec in specs.items():
        assert spec.contains(pins[name], prereleases=True), (name, spec, pins[name])
    # what the pip route pins beyond environment.yml comes with knime-python-base 5.5
    beyond = set(pins) - set(specs)
    assert beyond == {"pyarrow", "py4j", "markdown"}, beyond
    for name, version in KNIME_55_PINS.items():
        assert pins[name] == Version(version)


# ----------------------------------------------------------------------------- stored tables
def _bits(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=np.float64).view(np.uint64)


def _awkward_floats() -> pd.DataFrame:
    rng = np.random.default_rng(20240510)
    special = [0.1 + 0.2, 1 / 3, 2 / 3, 1e-300, -1e-300, 5e-324, 2.2250738585072014e-308,
               1.7976931348623157e308, -0.0, 0.0, 2.0**53 + 2, 123456789.12345679, math.pi,
               -math.e, 1e16, 9007199254740993.0, 0.1, 1e22, 1e23, 4.35, 0.3]
    n = len(special)
    return pd.DataFrame({
        "epoch": np.arange(1, n + 1, dtype=np.int64),
        "special": np.array(special, dtype=np.float64),
        "normal": rng.normal(size=n),
        "loss": rng.uniform(90, 200, size=n),
        "tiny": rng.normal(size=n) * 1e-200,
        "wide": rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, size=n),
        "float32ish": rng.normal(size=n).astype(np.float32).astype(np.float64),
    })


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_stored_tables_round_trip_bit_exactly(tmp_path, suffix):
    df = _awkward_floats()
    back = read_table(write_table(df, tmp_path / f"t{suffix}"))
    assert list(back.columns) == list(df.columns)
    assert dict(back.dtypes) == dict(df.dtypes)
    assert back["epoch"].tolist() == df["epoch"].tolist()
    for col in df.columns.drop("epoch"):
        assert (_bits(back[col]) == _bits(df[col])).all(), col
    assert math.copysign(1, back["special"][8]) == -1  # negative zero stays negative


def test_stored_tables_keep_missing_and_infinite_values(tmp_path):
    df = pd.DataFrame({"x": [np.nan, np.inf, -np.inf, 1.5]})
    for suffix in (".csv", ".parquet"):
        back = read_table(write_table(df, tmp_path / f"m{suffix}"))["x"]
        assert back.isna().tolist() == [True, False, False, False]
        assert back[1:].tolist() == [np.inf, -np.inf, 1.5]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(allow_nan=False, width=64), min_size=1, max_size=30))
def test_any_float64_survives_a_csv_table(values):
    df = pd.DataFrame({"v": np.array(values, dtype=np.float64)})
    with tempfile.TemporaryDirectory() as tmp:
        back = read_table(write_table(df, Path(tmp) / "t.csv"))
    assert (_bits(back["v"]) == _bits(df["v"])).all()
