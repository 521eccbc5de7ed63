# KNIME Python Script node "Generate". In: object 1 = model.
# Out: table 1 = 64 digits decoded from z ~ N(0, I), with a PNG image cell each (column image);
# image 1 = PNG grid of them.
import knime.scripting.io as knio

from vae_core.nodes.steps import generate_step, params_from_flow_variables

out = generate_step(knio.input_objects[0], params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.table)
knio.output_images[0] = out.png
