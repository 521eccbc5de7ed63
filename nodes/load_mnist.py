# KNIME Python Script node "Load MNIST" (0 inputs).
# Out: table 1 = 64 random training images, table 2 = the evaluation images (input of Encode and
# Reconstruct), image 1 = PNG grid of the samples. Reads the workflow variables (data_dir, seed, ...).
import knime.scripting.io as knio

from vae_core.steps import load_mnist_step, params_from_flow_variables

out = load_mnist_step(params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.samples)
knio.output_tables[1] = knio.Table.from_pandas(out.evaluation)
knio.output_images[0] = out.png
