# KNIME Python Script node "Decode". In: object 1 = model, table 1 = latent points z1..zk (k =
# the model's latent size; e.g. Encode's explorer table, or a grid made with a Table Creator).
# Out: table 1 = z1..zk, the decoded pixels and (first 1000 rows) a PNG image cell; image 1 = PNG
# grid of the first 256 digits.
import os
import sys

import knime.scripting.io as knio

DATA_AREA = knio.get_workflow_data_area_dir()  # holds the vae_core bundled with the workflow
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.steps import decode_step, params_from_flow_variables  # noqa: E402

out = decode_step(knio.input_objects[0], knio.input_tables[0].to_pandas(),
                  params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.table)
knio.output_images[0] = out.png
