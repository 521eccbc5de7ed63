# KNIME Python Script node "Load Model" (0 inputs). Reads the model at the workflow variable
# model_path (relative: inside this workflow's data folder): a Save Model file, or a
# `vae-mnist run` folder / its checkpoint.pt. Out: object 1 = the model, table 1 = one row
# describing it.
import os
import sys

import knime.scripting.io as knio

DATA_AREA = knio.get_workflow_data_area_dir()  # holds the vae_core bundled with the workflow
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.steps import load_model_step, params_from_flow_variables  # noqa: E402

out = load_model_step(params_from_flow_variables(knio.flow_variables),
                      DATA_AREA)
knio.output_objects[0] = out.model
knio.output_tables[0] = knio.Table.from_pandas(out.table)
