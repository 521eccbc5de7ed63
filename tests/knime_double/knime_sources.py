"""Where the KNIME tests find KNIME 5.5.3's real Python side, and how they fetch it.

TEST-ONLY, our own code; KNIME's files are never copied into this repository. The manifest
beside this module (``knime-sources-5.5.3.tsv``) pins each file the tests may run: its path in a
folder laid out like ``../shared/knime/python``, its public repository, and its SHA-256.

Sources, in order (the first that exists is used, and must verify):
1. ``$VAE_KNIME_SOURCES``: a folder laid out like ``../shared/knime/python``;
2. ``../shared/knime/python`` beside the checkout (this project's own machines and CI);
3. the cache, ``$VAE_KNIME_CACHE`` (default ``~/.cache/vae-mnist/knime-python-5.5.3``);
4. a download of exactly the manifest's files from ``$VAE_KNIME_SOURCES_URL`` (default
   ``https://raw.githubusercontent.com``) at ``/knime/<repository>/<tag>/<path>``. Every file
   is checked against the manifest; the cache is written only when all of them pass.

``python knime_sources.py --write-manifest DIR`` rewrites the manifest from a verified copy.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MANIFEST = Path(__file__).with_name("knime-sources-5.5.3.tsv")
TAG = "analytics-platform/5.5.3"
ENV_SOURCES = "VAE_KNIME_SOURCES"
ENV_URL = "VAE_KNIME_SOURCES_URL"
ENV_CACHE = "VAE_KNIME_CACHE"
ENV_SHARED = "VAE_SHARED_DIR"  # where ../shared is; tests point it at an empty folder
DEFAULT_URL = "https://raw.githubusercontent.com"
TIMEOUT_S = 20.0  # per socket operation
# A local folder of the layout -> (KNIME repository, the folder's path inside that repository).
FOLDERS = {
    "knime-python-5.5.3": ("knime-python", ""),
    "knime-python-5.5.3-tests": ("knime-python",
                                 "org.knime.python3.arrow.tests/src/test/python/unittest/"),
    "knime-python-legacy-5.5.3": ("knime-python-legacy", ""),
}
FIX = (f"Set {ENV_SOURCES} to a folder laid out like ../shared/knime/python, or "
       f"{ENV_URL} to a mirror of {DEFAULT_URL}.")


class SourcesUnavailable(ImportError):
    """KNIME's Python sources could not be found or fetched; the message says why and the fix."""


@dataclass(frozen=True)
class Entry:
    """One pinned file: its path in the local layout and its SHA-256."""

    local: str
    sha256: str

    @property
    def repository(self) -> str:
        return FOLDERS[self.local.split("/", 1)[0]][0]

    @property
    def repo_path(self) -> str:
        top, rest = self.local.split("/", 1)
        return FOLDERS[top][1] + rest

    def url(self, base: str) -> str:
        path = urllib.parse.quote(f"knime/{self.repository}/{TAG}/{self.repo_path}")
        return f"{base.rstrip('/')}/{path}"


def read_manifest(path: Path = MANIFEST) -> list[Entry]:
    entries = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            sha, local = line.split("\t")
            entries.append(Entry(local, sha))
    return entries


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def problems(root: Path, entries: list[Entry]) -> list[str]:
    """What keeps ``root`` from being a verified copy: missing files, wrong checksums."""
    found = []
    for e in entries:
        path = root / e.local
        if not path.is_file():
            found.append(f"{e.local} is missing")
        elif _sha256(path.read_bytes()) != e.sha256:
            found.append(f"{e.local} has the wrong SHA-256")
    return found


def shared_dir() -> Path:
    return Path(os.environ.get(ENV_SHARED) or REPO.parent / "shared")


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vae-mnist" / "knime-python-5.5.3"


def _fetch(entry: Entry, base: str) -> bytes:
    url = entry.url(base)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            data = answer.read()
    except urllib.error.HTTPError as exc:
        raise SourcesUnavailable(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourcesUnavailable(f"cannot reach {url} ({reason})") from None
    if _sha256(data) != entry.sha256:
        raise SourcesUnavailable(f"{url} has SHA-256 {_sha256(data)}, the manifest pins "
                                 f"{entry.sha256}")
    return data


def download(target: Path, base: str, entries: list[Entry]) -> Path:
    """Fetch every pinned file into ``target``, all verified, or write nothing at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            bodies = list(pool.map(lambda e: _fetch(e, base), entries))
        for entry, data in zip(entries, bodies, strict=True):
            path = staging / entry.local
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists() and problems(target, entries):  # a damaged cache: replaced whole
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another test run filled the cache meanwhile: use it if it verifies
            if not target.is_dir() or problems(target, entries):
                raise
    except SourcesUnavailable as exc:
        raise SourcesUnavailable(f"KNIME 5.5.3's Python sources could not be downloaded: {exc}. "
                                 f"Nothing was cached. {FIX}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _verified(root: Path, what: str, entries: list[Entry]) -> Path:
    bad = problems(root, entries)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SourcesUnavailable(f"{what} {root} is not KNIME 5.5.3's Python side: {bad[0]}{more}. "
                                 + FIX)
    return root


@functools.cache
def locate() -> Path:
    """The verified folder (laid out like ``../shared/knime/python``); fetched if need be."""
    entries = read_manifest()
    if os.environ.get(ENV_SOURCES):
        return _verified(Path(os.environ[ENV_SOURCES]).expanduser().absolute(), ENV_SOURCES,
                         entries)
    shared = shared_dir() / "knime" / "python"
    if shared.is_dir():
        return _verified(shared.absolute(), "The folder", entries)
    cache = cache_dir()
    if cache.is_dir() and not problems(cache, entries):
        return cache
    base = os.environ.get(ENV_URL) or DEFAULT_URL
    print(f"fetching KNIME 5.5.3's Python sources ({len(entries)} files) from {base} into {cache}",
          file=sys.stderr)
    return download(cache, base, entries)


def write_manifest(root: Path, path: Path = MANIFEST) -> None:
    """Pin every file of a copy laid out like ``../shared/knime/python`` (REF/COMMIT aside)."""
    lines = ["# SHA-256 and path (in the layout of ../shared/knime/python) of each file of KNIME "
             f"5.5.3's Python side the tests may run; at tag {TAG} of the repositories named in "
             "knime_sources.FOLDERS."]
    for top in sorted(FOLDERS):
        for file in sorted((root / top).rglob("*")):
            if file.is_file() and file.name not in ("REF", "COMMIT"):
                rel = file.relative_to(root).as_posix()
                lines.append(f"{_sha256(file.read_bytes())}\t{rel}")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-manifest"] and len(sys.argv) == 3:
        write_manifest(Path(sys.argv[2]))
    else:
        sys.exit("usage: knime_sources.py --write-manifest DIR")
