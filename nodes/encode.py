# KNIME Python Script node "Encode". In: object 1 = model, table 1 = images.
# Out: table 1 = latent means z1..zk (and log-variances) of every image with label and digit;
# table 2 = the latent explorer: 1000 seeded images with the plotted coordinates plot_x, plot_y
# (z1, z2, or the first two principal components) and their digit as an image cell;
# image 1 = PNG scatter. Pushes latent_x_title / latent_y_title (what plot_x / plot_y are).
import knime.scripting.io as knio

from vae_core.nodes.steps import encode_step, params_from_flow_variables

out = encode_step(knio.input_objects[0], knio.input_tables[0].to_pandas(),
                  params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.latent)
knio.output_tables[1] = knio.Table.from_pandas(out.explorer)
knio.output_images[0] = out.png
knio.flow_variables.update(out.flow_variables)
