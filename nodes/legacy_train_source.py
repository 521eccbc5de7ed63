# KNIME "Python Source (legacy)" node: the lab's original approach. Trains through vae_core with
# the workflow variables (legacy global `flow_variables`) and returns the loss table in the
# global `output_table`, as the legacy integration expects. The legacy node runs in the
# workflow folder, so the vae_core bundled with the workflow is in ./data.
import os
import sys

sys.path.insert(0, os.path.join(os.getcwd(), "data"))
from vae_core.steps import legacy_train_step, params_from_flow_variables  # noqa: E402

output_table = legacy_train_step(params_from_flow_variables(flow_variables)).loss  # noqa: F821
