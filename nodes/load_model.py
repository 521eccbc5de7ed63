# KNIME Python Script node "Load Model" (0 inputs). Reads the model at the workflow variable
# model_path (relative: inside this workflow's data folder): a Save Model file, or a
# `vae-mnist run` folder / its checkpoint.pt. Out: object 1 = the model, table 1 = one row
# describing it.
import sys

import knime.scripting.io as knio

sys.path.insert(0, knio.get_workflow_data_area_dir())  # the vae_core bundled with the workflow
from vae_core.steps import load_model_step, params_from_flow_variables  # noqa: E402

out = load_model_step(params_from_flow_variables(knio.flow_variables),
                      knio.get_workflow_data_area_dir())
knio.output_objects[0] = out.model
knio.output_tables[0] = knio.Table.from_pandas(out.table)
