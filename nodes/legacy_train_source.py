# KNIME "Python Source (legacy)" node: the lab's original approach. Trains through vae_core with
# the workflow variables (legacy global `flow_variables`) and returns the loss table in the
# global `output_table`, as the legacy integration expects.
from vae_core.steps import params_from_flow_variables, train_step

output_table = train_step(params_from_flow_variables(flow_variables)).loss  # noqa: F821
