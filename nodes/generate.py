# KNIME Python Script node "Generate". In: object 1 = model.
# Out: table 1 = 64 digits decoded from z ~ N(0, I), with a PNG image cell each (column image);
# image 1 = PNG grid of them.
import sys

import knime.scripting.io as knio

sys.path.insert(0, knio.get_workflow_data_area_dir())  # the vae_core bundled with the workflow
from vae_core.steps import generate_step, params_from_flow_variables  # noqa: E402

out = generate_step(knio.input_objects[0], params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.table)
knio.output_images[0] = out.png
