"""State behind the knio double: filled by the runner before each script, read back after it.

TEST-ONLY (see ../api/table.py). KNIME's real module of this name does the same job.
"""

from __future__ import annotations

from typing import Any

_flow_variables: dict[str, Any] = {}
_input_objects: list[Any] = []
_input_tables: list[Any] = []
_output_tables: list[Any] = []
_output_images: list[Any] = []
_output_objects: list[Any] = []
_workflow_dir = "."
_temp_dir = "."


def setup(*, flow_variables: dict[str, Any], input_objects: list[Any], input_tables: list[Any],
          n_out_tables: int, n_out_images: int, n_out_objects: int, workflow_dir: str,
          temp_dir: str) -> None:
    """Fresh port lists for one node execution; outputs start padded with None."""
    global _workflow_dir, _temp_dir
    _flow_variables.clear()
    _flow_variables.update(flow_variables)
    _input_objects[:] = list(input_objects)
    _input_tables[:] = list(input_tables)
    _output_tables[:] = [None] * n_out_tables
    _output_images[:] = [None] * n_out_images
    _output_objects[:] = [None] * n_out_objects
    _workflow_dir, _temp_dir = workflow_dir, temp_dir


class _FixedSizeListView:
    """A list of ports: fixed length, bad or negative index → KeyError (not IndexError)."""

    def __init__(self, data: list[Any], name: str) -> None:
        self._data = data
        self._name = name

    def _check(self, idx: Any) -> None:
        if not isinstance(idx, int) or not 0 <= idx < len(self._data):
            n = len(self._data)
            raise KeyError(f"Invalid port index {idx}, only {n} {self._name}"
                           f"{'' if n == 1 else 's'} {'is' if n == 1 else 'are'} available")

    def __getitem__(self, idx: int) -> Any:
        self._check(idx)
        return self._data[idx]

    def __setitem__(self, idx: int, value: Any) -> None:
        self._check(idx)
        self._data[idx] = value

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return iter(list(self._data))

    def __str__(self) -> str:
        return str(self._data)

    __repr__ = __str__
