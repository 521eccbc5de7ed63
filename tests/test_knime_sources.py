"""Where the KNIME tests get KNIME 5.5.3's Python side: the order of sources, the pinned
download (against a mirror on 127.0.0.1), and skip-or-fail when nothing can be had."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from _mnist_mirror import MirrorServer

sys.path.insert(0, str(Path(__file__).resolve().parent / "knime_double"))
import knime_sources  # noqa: E402

HERE = Path(__file__).resolve().parent
ENTRIES = knime_sources.read_manifest()
SHARED_PY = knime_sources.REPO.parent / "shared" / "knime" / "python"


def _genuine() -> Path:
    """A verified copy to serve from: ../shared's, else the one this session found."""
    return SHARED_PY if SHARED_PY.is_dir() else knime_sources.locate()


@pytest.fixture
def no_sources(monkeypatch, tmp_path):
    """As on a fresh machine: no ../shared, an empty cache, nothing named in the environment."""
    monkeypatch.delenv(knime_sources.ENV_SOURCES, raising=False)
    monkeypatch.delenv(knime_sources.ENV_URL, raising=False)
    monkeypatch.setenv(knime_sources.ENV_SHARED, str(tmp_path / "no-shared"))
    monkeypatch.setenv(knime_sources.ENV_CACHE, str(tmp_path / "cache" / "knime-python-5.5.3"))
    return tmp_path / "cache" / "knime-python-5.5.3"


@pytest.fixture
def mirror(monkeypatch):
    """Every pinned file at its public path, served from 127.0.0.1."""
    genuine = _genuine()
    files = {f"knime/{e.repository}/{knime_sources.TAG}/{e.repo_path}":
             (genuine / e.local).read_bytes() for e in ENTRIES}
    server = MirrorServer(files)
    monkeypatch.setattr("_mnist_mirror.MAX_REQUESTS", 4 * len(files))
    monkeypatch.setenv(knime_sources.ENV_URL, server.url)
    yield server
    server.close()


def locate() -> Path:
    return knime_sources.locate.__wrapped__()  # not the per-process memo


def _left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_manifest_pins_every_file_of_the_shared_copy_and_nothing_else():
    if not SHARED_PY.is_dir():
        pytest.skip(f"../shared/knime/python not found at {SHARED_PY}")
    on_disk = {p.relative_to(SHARED_PY).as_posix() for top in knime_sources.FOLDERS
               for p in (SHARED_PY / top).rglob("*") if p.is_file() and p.name not in ("REF", "COMMIT")}
    assert {e.local for e in ENTRIES} == on_disk
    assert knime_sources.problems(SHARED_PY, ENTRIES) == []
    assert (SHARED_PY / "knime-python-5.5.3" / "REF").read_text().strip() == knime_sources.TAG


def test_urls_follow_the_public_repositories_layout():
    by_local = {e.local: e for e in ENTRIES}
    launcher = by_local["knime-python-5.5.3/org.knime.python3.scripting.nodes/src/main/python/"
                        "_knime_scripting_launcher.py"]
    assert launcher.url("https://raw.githubusercontent.com") == (
        "https://raw.githubusercontent.com/knime/knime-python/analytics-platform/5.5.3/"
        "org.knime.python3.scripting.nodes/src/main/python/_knime_scripting_launcher.py")
    test_file = by_local["knime-python-5.5.3-tests/testing_utility.py"]
    assert test_file.url("http://m/") == ("http://m/knime/knime-python/analytics-platform/5.5.3/"
                                          "org.knime.python3.arrow.tests/src/test/python/unittest/"
                                          "testing_utility.py")
    legacy = [e for e in ENTRIES if e.local.startswith("knime-python-legacy-5.5.3/")]
    assert legacy and all(e.url("http://m").startswith(
        "http://m/knime/knime-python-legacy/analytics-platform/5.5.3/org.knime.python") for e in legacy)


def test_download_of_good_files_fills_the_cache_once(no_sources, mirror):
    assert locate() == no_sources
    assert knime_sources.problems(no_sources, ENTRIES) == []
    assert sorted(mirror.served) == sorted(mirror.files)  # each pinned file, from the mirror
    asked = len(mirror.requests)
    assert locate() == no_sources  # the verified cache: nothing asked again
    assert len(mirror.requests) == asked
    assert _left_in(no_sources.parent) == [no_sources.name]  # no staging folder left


def test_wrong_checksum_caches_nothing_and_says_which_file(no_sources, mirror):
    name = next(n for n in mirror.files if n.endswith("_knime_scripting_launcher.py"))
    mirror.files[name] = mirror.files[name] + b"\n# changed\n"
    with pytest.raises(knime_sources.SourcesUnavailable) as err:
        locate()
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"KNIME 5.5.3's Python sources could not be downloaded: {mirror.url}"
                           f"{name} has SHA-256 ")
    assert "Nothing was cached. Set VAE_KNIME_SOURCES to a folder" in text
    assert _left_in(no_sources.parent) == []


def test_missing_file_caches_nothing(no_sources, mirror):
    name = next(n for n in mirror.files if n.endswith("testing_utility.py"))
    del mirror.files[name]
    with pytest.raises(knime_sources.SourcesUnavailable,
                       match=f"could not be downloaded: {mirror.url}{name} answered HTTP 404."):
        locate()
    assert _left_in(no_sources.parent) == []


def test_no_server_is_one_clear_error(no_sources, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(knime_sources.ENV_URL, f"http://127.0.0.1:{port}")
    with pytest.raises(knime_sources.SourcesUnavailable) as err:
        locate()
    assert f"cannot reach http://127.0.0.1:{port}/knime/" in str(err.value)
    assert "Connection refused" in str(err.value) and "\n" not in str(err.value)
    assert _left_in(no_sources.parent) == []


def test_a_damaged_cache_is_fetched_again(no_sources, mirror):
    locate()
    victim = no_sources / ENTRIES[0].local
    victim.write_bytes(b"damaged")
    assert locate() == no_sources
    assert knime_sources.problems(no_sources, ENTRIES) == []


def test_named_folder_wins_and_must_verify(no_sources, monkeypatch, tmp_path):
    monkeypatch.setenv(knime_sources.ENV_SOURCES, str(_genuine()))
    assert locate() == _genuine()
    monkeypatch.setenv(knime_sources.ENV_SOURCES, str(tmp_path / "empty"))
    with pytest.raises(knime_sources.SourcesUnavailable,
                       match=r"VAE_KNIME_SOURCES .*empty is not KNIME 5.5.3's Python side: "
                             r"knime-python-5.5.3/.* is missing \(and 134 more\)"):
        locate()


def test_shared_copy_is_used_without_any_download(monkeypatch, tmp_path):
    if not SHARED_PY.is_dir():
        pytest.skip(f"../shared/knime/python not found at {SHARED_PY}")
    monkeypatch.delenv(knime_sources.ENV_SOURCES, raising=False)
    monkeypatch.delenv(knime_sources.ENV_SHARED, raising=False)
    monkeypatch.setenv(knime_sources.ENV_URL, "http://127.0.0.1:9")  # would fail if asked
    monkeypatch.setenv(knime_sources.ENV_CACHE, str(tmp_path / "cache"))
    assert locate() == SHARED_PY.absolute()
    assert not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------- skip or fail
def _run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """pytest on tests/_needs_knime.py (one KNIME test) in a fresh process, with no way to get
    KNIME's sources: no ../shared, an empty cache, a download address nobody answers."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", knime_sources.ENV_SOURCES, knime_sources.ENV_URL)}
    env.update(VAE_SHARED_DIR=str(tmp_path / "no-shared"), VAE_KNIME_CACHE=str(tmp_path / "cache"),
               VAE_KNIME_SOURCES_URL="http://127.0.0.1:9", OMP_NUM_THREADS="1",
               VAE_MNIST_DIR=os.environ.get("VAE_MNIST_DIR", str(tmp_path)))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(HERE / "_needs_knime.py")], cwd=HERE.parent, env=env,
                          capture_output=True, text=True, timeout=300)


def test_without_sources_a_local_run_skips_and_says_why(tmp_path):
    local = _run_probe(tmp_path, None)
    # the only test file is skipped whole, so pytest says no test ran (exit 5), not a failure
    assert local.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, local.stdout + local.stderr
    summary = [line for line in local.stdout.splitlines() if line.startswith("SKIPPED 1 test file")]
    assert len(summary) == 1, local.stdout
    assert summary[0].startswith("SKIPPED 1 test file (all its tests): 1 x KNIME 5.5.3's Python "
                                 "sources could not be downloaded: cannot reach http://127.0.0.1:9/")


def test_without_sources_ci_fails(tmp_path):
    ci = _run_probe(tmp_path, "true")
    assert ci.returncode == pytest.ExitCode.INTERRUPTED, ci.stdout + ci.stderr
    assert "KNIME 5.5.3's Python sources could not be downloaded: cannot reach" in ci.stdout
    assert "passed" not in ci.stdout
