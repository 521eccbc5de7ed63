# KNIME Python Script node "Generate". In: object 1 = model.
# Out: table 1 = 64 digits decoded from z ~ N(0, I), with a PNG image cell each (column image);
# image 1 = PNG grid of them.
import os
import sys

import knime.scripting.io as knio

DATA_AREA = knio.get_workflow_data_area_dir()  # holds the vae_core bundled with the workflow
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.steps import generate_step, params_from_flow_variables  # noqa: E402

out = generate_step(knio.input_objects[0], params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.table)
knio.output_images[0] = out.png
