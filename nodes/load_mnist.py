# KNIME Python Script node "Load MNIST" (0 inputs). Reads the workflow variables (data_dir, seed,
# train_limit, eval_limit, ...). Out: table 1 = training images, table 2 = held-out images
# (image_id, source, label, digit, pixel_0..pixel_783 as grey levels 0-255), table 3 = 64 random
# training images with a PNG image cell each, image 1 = PNG grid of them.
import os
import sys

import knime.scripting.io as knio

DATA_AREA = knio.get_workflow_data_area_dir()  # holds the vae_core bundled with the workflow
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.steps import load_mnist_step, params_from_flow_variables  # noqa: E402

out = load_mnist_step(params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.train)
knio.output_tables[1] = knio.Table.from_pandas(out.heldout)
knio.output_tables[2] = knio.Table.from_pandas(out.samples)
knio.output_images[0] = out.png
