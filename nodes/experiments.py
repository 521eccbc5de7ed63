# KNIME Python Script node "Run experiments" (0 inputs): the lab's grid (latent_dims x betas,
# workflow variables) trained and evaluated with the project's sweep in sweep_dir (relative:
# this workflow's data folder); re-executing continues from the finished configurations.
# Out: table 1 = experiments (one row per configuration), table 2 = the lab's claims and the
# targets with verdicts and deciding numbers, images 1-3 = PNG trade-off, metrics against
# latent size, KL per dimension. Pushes sweep_trained / sweep_kept (configurations).
import knime.scripting.io as knio

from vae_core.nodes.experiments import experiments_step, sweep_params_from_flow_variables

out = experiments_step(sweep_params_from_flow_variables(knio.flow_variables),
                       knio.get_workflow_data_area_dir())
knio.output_tables[0] = knio.Table.from_pandas(out.experiments)
knio.output_tables[1] = knio.Table.from_pandas(out.claims)
for i, png in enumerate(out.figures):
    knio.output_images[i] = png
knio.flow_variables.update(out.flow_variables)
