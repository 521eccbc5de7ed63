# KNIME Python Script node "Decode". In: object 1 = model, table 1 = latent points z1..zk (k =
# the model's latent size; e.g. Encode's explorer table, or a grid made with a Table Creator).
# Out: table 1 = z1..zk, the decoded pixels and (first 1000 rows) a PNG image cell; image 1 = PNG
# grid of the first 256 digits.
import knime.scripting.io as knio

from vae_core.nodes.steps import decode_step, params_from_flow_variables

out = decode_step(knio.input_objects[0], knio.input_tables[0].to_pandas(),
                  params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.table)
knio.output_images[0] = out.png
