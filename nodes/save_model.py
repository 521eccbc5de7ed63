# KNIME Python Script node "Save Model". In: object 1 = model. Writes it to the workflow
# variable model_path (relative: inside this workflow's data folder), atomically; a different
# model already there is replaced only when overwrite_model = 1.
# Out: table 1 = one row: the file, status (written | unchanged | replaced), the model's settings.
import os
import sys

import knime.scripting.io as knio

DATA_AREA = knio.get_workflow_data_area_dir()  # holds the vae_core bundled with the workflow
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.steps import params_from_flow_variables, save_model_step  # noqa: E402

knio.output_tables[0] = knio.Table.from_pandas(save_model_step(
    knio.input_objects[0], params_from_flow_variables(knio.flow_variables),
    DATA_AREA))
