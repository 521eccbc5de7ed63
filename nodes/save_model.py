# KNIME Python Script node "Save Model". In: object 1 = model. Writes it to the workflow
# variable model_path (relative: inside this workflow's data folder), atomically; a different
# model already there is replaced only when overwrite_model = 1.
# Out: table 1 = one row: the file, status (written | unchanged | replaced), the model's settings.
import knime.scripting.io as knio

from vae_core.nodes.steps import params_from_flow_variables, save_model_step

knio.output_tables[0] = knio.Table.from_pandas(save_model_step(
    knio.input_objects[0], params_from_flow_variables(knio.flow_variables),
    knio.get_workflow_data_area_dir()))
