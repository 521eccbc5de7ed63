"""TEST-ONLY stand-in for KNIME's legacy Python Source node (a different kernel from the Python
Script node's; its rules are in KNIO_API.md §1.4 and §3): the script defines ``output_table``,
reads and changes ``flow_variables``, and runs with the workflow folder as working directory.
``run_legacy_source`` runs it in this process, ``run_legacy_source_isolated`` in a fresh one.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from knime_ports import new_port_dir
from knime_runner import ROW_ID, NodeExecutionError


@dataclass
class LegacyResult:
    table: pd.DataFrame  # index = the RowIDs KNIME would assign
    flow_variables: dict[str, Any]


def _legacy_row_ids(index: pd.Index) -> list[str]:
    """Legacy rule: an int index value equal to its position → Row{i}, anything else str()."""
    ids = []
    for pos, value in enumerate(index):
        is_int = isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu")
        ids.append(f"Row{pos}" if is_int and int(value) == pos else str(value))
    seen = pd.Index(ids)
    if seen.has_duplicates:
        raise NodeExecutionError("Execute failed: Output DataFrame contains duplicate values in "
                                 f"its index: {sorted(set(seen[seen.duplicated()]))[:5]}")
    return ids


@contextlib.contextmanager
def _in_workflow_dir(workflow_dir: Path):
    old_cwd, old_path = os.getcwd(), list(sys.path)
    os.chdir(workflow_dir)
    sys.path.insert(0, str(workflow_dir))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def run_legacy_source(source: str, *, workflow_dir: str | Path, flow_variables: dict[str, Any],
                      name: str = "<Python Source>") -> LegacyResult:
    """Execute ``source`` as the legacy Python Source node (``output_table`` global)."""
    env: dict[str, Any] = {"flow_variables": dict(flow_variables)}
    with _in_workflow_dir(Path(workflow_dir).resolve()):
        try:
            exec(compile(source, name, "exec"), env, env)
        except (Exception, SystemExit) as exc:
            raise NodeExecutionError(f"Execute failed: {type(exc).__name__}: {exc}") from exc
    if "output_table" not in env:
        raise NodeExecutionError("Execute failed: the script did not define 'output_table'")
    out = env["output_table"]
    if not isinstance(out, pd.DataFrame):
        raise NodeExecutionError(f"Execute failed: output_table must be of type "
                                 f"pandas.DataFrame, got {type(out)}")
    table = out.copy()
    table.index = pd.Index(_legacy_row_ids(out.index), name=ROW_ID)
    table.columns = [str(c) for c in table.columns]
    pushed = {}
    for key, value in env["flow_variables"].items():
        if flow_variables.get(key, object()) != value:
            pushed[key] = value if isinstance(value, int | float | str) else str(value)
    return LegacyResult(table=table, flow_variables=pushed)


def run_legacy_source_isolated(source: str, *, workflow_dir: str | Path,
                               flow_variables: dict[str, Any], timeout: float = 300
                               ) -> LegacyResult:
    """:func:`run_legacy_source` in a fresh Python process, as every legacy node execution is.
    The repository is not on its path (the legacy kernel appends its own folders to
    PYTHONPATH; ours is this folder), so vae_core comes from the environment or the workflow."""
    port_dir = new_port_dir("legacy")
    (port_dir / "job.json").write_text(json.dumps({
        "source": source, "workflow_dir": str(Path(workflow_dir).resolve()),
        "flow_variables": flow_variables}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()),
                           str(port_dir)], cwd=port_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    status_file = port_dir / "status.json"
    if not status_file.is_file():
        raise AssertionError(f"legacy node process crashed (exit {proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
    status = json.loads(status_file.read_text())
    if status["error"]:
        raise NodeExecutionError(status["error"])
    return LegacyResult(table=pd.read_pickle(port_dir / "table.pickle"),
                        flow_variables=status["flow_variables"])


def _legacy_child_main(port_dir: Path) -> None:
    job = json.loads((port_dir / "job.json").read_text())
    status: dict[str, Any] = {"error": None}
    try:
        res = run_legacy_source(job["source"], workflow_dir=job["workflow_dir"],
                                flow_variables=job["flow_variables"])
    except NodeExecutionError as exc:
        status["error"] = str(exc)
    else:
        res.table.to_pickle(port_dir / "table.pickle")
        status["flow_variables"] = res.flow_variables
    (port_dir / "status.json").write_text(json.dumps(status))


if __name__ == "__main__":
    _legacy_child_main(Path(sys.argv[1]))
