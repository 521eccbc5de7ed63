# KNIME "Python Source (legacy)" node: the lab's original approach. Trains through vae_core with
# the workflow variables (legacy global `flow_variables`) and returns the loss table in the
# global `output_table`, as the legacy integration expects.
from vae_core.nodes.steps import legacy_train_step, params_from_flow_variables

output_table = legacy_train_step(params_from_flow_variables(flow_variables)).loss  # noqa: F821
