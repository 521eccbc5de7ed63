# KNIME Python Script node "Load MNIST" (0 inputs). Reads the flow variables (data_dir, seed,
# train_limit, eval_limit, ...; in VAE_MNIST the Train VAE component's dialog). Out: table 1 =
# training images, table 2 = held-out images (image_id, source, label, digit, pixel_0..pixel_783 as
# grey levels 0-255), table 3 = 64 random training images with a PNG image cell each, image 1 = PNG
# grid of them.
import knime.scripting.io as knio

from vae_core.nodes.steps import load_mnist_step, params_from_flow_variables

out = load_mnist_step(params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.train)
knio.output_tables[1] = knio.Table.from_pandas(out.heldout)
knio.output_tables[2] = knio.Table.from_pandas(out.samples)
knio.output_images[0] = out.png
