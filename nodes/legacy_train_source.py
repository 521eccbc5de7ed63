# KNIME "Python Source (legacy)" node: the lab's original approach. Trains through vae_core with
# the workflow variables (legacy global `flow_variables`) and returns the loss table in the
# global `output_table`, as the legacy integration expects. The legacy node runs in the
# workflow folder, so the vae_core bundled with the workflow is in ./data.
import os
import sys

DATA_AREA = os.path.join(os.getcwd(), "data")  # the workflow folder's data area
if not os.path.isfile(os.path.join(DATA_AREA, "vae_core", "__init__.py")):
    raise RuntimeError("This workflow's data folder has no vae_core: import the workflow from its "
                       ".knwf file, or run `make workflow` in the vae-mnist-knime checkout.")
sys.path.insert(0, DATA_AREA)
from vae_core.nodes.steps import legacy_train_step, params_from_flow_variables  # noqa: E402

output_table = legacy_train_step(params_from_flow_variables(flow_variables)).loss  # noqa: F821
