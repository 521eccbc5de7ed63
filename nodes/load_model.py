# KNIME Python Script node "Load Model" (0 inputs). Reads the model at the workflow variable
# model_path (relative: inside this workflow's data folder): a Save Model file, or a
# `vae-mnist run` folder / its checkpoint.pt. Out: object 1 = the model, table 1 = one row
# describing it (file, saved_at, the workflow folder it lies in, settings, last losses).
# Pushes model_file, model_saved_at, model_workflow and model_<setting> for each setting.
import knime.scripting.io as knio

from vae_core.nodes.steps import load_model_step, params_from_flow_variables

out = load_model_step(params_from_flow_variables(knio.flow_variables),
                      knio.get_workflow_data_area_dir())
knio.output_objects[0] = out.model
knio.output_tables[0] = knio.Table.from_pandas(out.table)
knio.flow_variables.update(out.flow_variables)
