# KNIME Python Script node "Train VAE" (0 inputs; loads MNIST itself from data_dir).
# Out: table 1 = loss per epoch, image 1 = PNG loss curve, object 1 = the trained model
# (a vae_core.artifact.TrainedVAE). Hyperparameters come from the workflow variables.
import knime.scripting.io as knio

from vae_core.steps import params_from_flow_variables, train_step

out = train_step(params_from_flow_variables(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.loss)
knio.output_images[0] = out.png
knio.output_objects[0] = out.model
