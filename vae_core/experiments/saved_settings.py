"""An experiment folder (sweep, repeat, novelty benchmark) keeps the settings it was started
with in a JSON file; continuing it with other settings is refused, as its results would no
longer compare. One rule for all three.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vae_core.config import differences
from vae_core.errors import RunDirError, option


def check_saved_settings(path: Path, section: str, wanted: Mapping[str, Any],
                         names: Sequence[str], what: str,
                         extras: Mapping[str, Any] | None = None) -> None:
    """Refuse when the file at ``path`` holds, under ``section``, other values of the settings
    ``names`` than ``wanted``, or other top-level ``extras``. A setting added after the file was
    written reads as its default (what was run). ``what`` names the experiment ("a sweep")."""
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
        saved = dict(old.get(section, {}))
    except (OSError, ValueError, TypeError, AttributeError):
        raise RunDirError(f"{path} is unreadable. Restore it, or use another folder "
                          f"({option('out')}).") from None
    diffs = differences(saved, dict(wanted), names)
    diffs += [f"{k}: {old.get(k)!r} before, {v!r} now" for k, v in (extras or {}).items()
              if old.get(k) != v]
    if diffs:
        raise RunDirError(f"Folder {path.parent} holds {what} with other settings ("
                          + "; ".join(diffs) + "). Continue it with the same settings, or use "
                          f"another folder ({option('out')}).")
