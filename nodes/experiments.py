# KNIME Python Script node "Run experiments" (0 inputs): the lab's grid (latent_dims x betas,
# workflow variables) trained and evaluated with the project's sweep in sweep_dir (relative:
# this workflow's data folder); re-executing continues from the finished configurations.
# Out: table 1 = experiments (one row per configuration), table 2 = the lab's claims and the
# targets with verdicts and deciding numbers, images 1-3 = PNG trade-off, metrics against
# latent size, KL per dimension. Pushes sweep_trained / sweep_kept (configurations).
import os
import sys

import knime.scripting.io as knio

DATA_AREA = knio.get_workflow_data_area_dir()  # holds the vae_core bundled with the workflow
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.experiments import experiments_step, sweep_params_from_flow_variables  # noqa: E402

out = experiments_step(sweep_params_from_flow_variables(knio.flow_variables),
                       DATA_AREA)
knio.output_tables[0] = knio.Table.from_pandas(out.experiments)
knio.output_tables[1] = knio.Table.from_pandas(out.claims)
for i, png in enumerate(out.figures):
    knio.output_images[i] = png
knio.flow_variables.update(out.flow_variables)
