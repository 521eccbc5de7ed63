# KNIME Python Script node "Train VAE". In: table 1 = training images, table 2 = held-out images
# (pixel_0..pixel_783, 0-1 or 0-255; optional label). Hyperparameters come from the flow variables
# (in VAE_MNIST: the Train VAE component's dialog). Out: table 1 = loss per epoch with the settings
# in every row, image 1 = PNG loss curve, object 1 = the model (plain data + tensors), flow
# variables vae_train_loss, vae_heldout_loss, ... (last epoch).
import knime.scripting.io as knio

from vae_core.nodes.steps import params_from_flow_variables, train_step

out = train_step(params_from_flow_variables(knio.flow_variables),
                 knio.input_tables[0].to_pandas(), knio.input_tables[1].to_pandas())
knio.output_tables[0] = knio.Table.from_pandas(out.loss)
knio.output_images[0] = out.png
knio.output_objects[0] = out.model
knio.flow_variables.update(out.flow_variables)
