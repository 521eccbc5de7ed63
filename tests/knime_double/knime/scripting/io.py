"""Test double of ``knime.scripting.io`` (knio), after KNIO_API.md §1 and §7.

TEST-ONLY: reached through a test-only sys.path entry (tests/knime_double), never installed; a
package named ``knime`` must never be installed into a KNIME Python environment. The runner
(tests/knime_double/knime_runner.py) drops this module from sys.modules before every script, so
each script sees fresh port lists, as in KNIME where every node execution is a new process.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from knime.api.table import BatchOutputTable, Table
from knime.scripting import _io_containers as _ioc

if "knime_io" in sys.modules:
    raise ImportError("Cannot use knime_io and knime.scripting.io in the same Python script")

flow_variables: dict[str, Any] = _ioc._flow_variables
input_objects = _ioc._FixedSizeListView(_ioc._input_objects, "input_object")
input_tables = _ioc._FixedSizeListView(_ioc._input_tables, "input_table")
output_tables = _ioc._FixedSizeListView(_ioc._output_tables, "output_table")
output_images = _ioc._FixedSizeListView(_ioc._output_images, "output_image")
output_objects = _ioc._FixedSizeListView(_ioc._output_objects, "output_object")
output_view = None


def get_workflow_temp_dir() -> str:
    return _ioc._temp_dir


def get_workflow_data_area_dir() -> str:
    return os.path.join(_ioc._workflow_dir, "data")  # not created, as in KNIME


__all__ = ["flow_variables", "input_objects", "input_tables", "output_tables", "output_objects",
           "output_images", "output_view", "Table", "BatchOutputTable",
           "get_workflow_temp_dir", "get_workflow_data_area_dir"]
