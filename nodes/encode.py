# KNIME Python Script node "Encode". In: object 1 = model, table 1 = images.
# Out: table 1 = latent means z1..zk (and log-variances) of every image with label and digit;
# table 2 = the latent explorer: 1000 seeded images with the plotted coordinates plot_x, plot_y
# (z1, z2, or the first two principal components) and their digit as an image cell;
# image 1 = PNG scatter. Pushes latent_x_title / latent_y_title (what plot_x / plot_y are).
import os
import sys

import knime.scripting.io as knio

DATA_AREA = knio.get_workflow_data_area_dir()  # holds the vae_core bundled with the workflow
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.steps import encode_step, params_from_flow_variables  # noqa: E402

out = encode_step(knio.input_objects[0], knio.input_tables[0].to_pandas(),
                  params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.latent)
knio.output_tables[1] = knio.Table.from_pandas(out.explorer)
knio.output_images[0] = out.png
knio.flow_variables.update(out.flow_variables)
