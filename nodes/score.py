# KNIME Python Script node "Score". In: object 1 = model, table 1 = images (pixel_0..pixel_783).
# Out: table 1 = the input table plus neg_elbo, recon, kl (nats per image), neg_log_lik_k (when
# score_iw_k > 0), percentile (against the model's held-out scores) and is_unusual (above the
# unusual_quantile of them); table 2 = the unusual_rows most unusual rows with image cells of the
# input, the reconstruction and the error map; image 1 = PNG histogram of the scores.
# Pushes unusual_count, unusual_share, unusual_threshold.
import knime.scripting.io as knio

from vae_core.nodes.score import score_settings, score_step
from vae_core.nodes.steps import params_from_flow_variables

out = score_step(knio.input_objects[0], knio.input_tables[0].to_pandas(),
                 params_from_flow_variables(knio.flow_variables),
                 score_settings(knio.flow_variables))
knio.output_tables[0] = knio.Table.from_pandas(out.scores)
knio.output_tables[1] = knio.Table.from_pandas(out.unusual)
knio.output_images[0] = out.png
knio.flow_variables.update(out.flow_variables)
