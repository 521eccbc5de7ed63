"""Print the environment that makes uv install from the package sources pip is configured with.

uv reads no pip configuration. A machine whose pip.conf names a company mirror, local wheel
folders or a constraints file would otherwise get other packages from uv than from pip. The
Makefile runs uv as ``env $(python3 scripts/uv_env.py) uv pip install …``; with no pip
configuration this prints nothing and uv uses PyPI, as pip does. Variables already set win.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

# pip's option -> uv's variable (uv takes lists separated by spaces)
OPTIONS = {"index-url": "UV_INDEX_URL", "extra-index-url": "UV_EXTRA_INDEX_URL",
           "find-links": "UV_FIND_LINKS", "constraint": "UV_CONSTRAINT"}


def pip_settings() -> dict[str, str]:
    """pip's effective settings (``pip config list``): option -> value, later sources win."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in OPTIONS and value:
            found[option] = value.strip().strip("'\"").replace("\n", " ")
    return found


def main() -> None:
    env = {OPTIONS[o]: v for o, v in pip_settings().items() if not os.environ.get(OPTIONS[o])}
    if (env.get("UV_EXTRA_INDEX_URL") or env.get("UV_FIND_LINKS")) \
            and not os.environ.get("UV_INDEX_STRATEGY"):
        # pip picks the best version across all its sources; uv's default takes the first
        # source that has a package at all.
        env["UV_INDEX_STRATEGY"] = "unsafe-best-match"
    print(" ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())))


if __name__ == "__main__":
    main()
