# KNIME Python Script node "Reconstruct". In: object 1 = model, table 1 = images.
# Out: table 1 = 10 images and their reconstructions (kind = original | reconstruction), each
# row with its digit as a PNG image cell (column image); image 1 = PNG of originals over
# reconstructions.
import knime.scripting.io as knio

from vae_core.nodes.steps import params_from_flow_variables, reconstruct_step

out = reconstruct_step(knio.input_objects[0], knio.input_tables[0].to_pandas(),
                       params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.table)
knio.output_images[0] = out.png
