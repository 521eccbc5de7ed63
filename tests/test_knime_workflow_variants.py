"""The legacy and the experiments workflow, executed through KNIME's real Python side
(helpers: ``_workflow_run.py``).
"""

from __future__ import annotations

import numpy as np
from _workflow_run import (
    PNG,
    PYTHON_SOURCE,
    as_frame,
    copy_workflow,
    execute,
)


# ----------------------------------------------------------------------------- legacy
def test_legacy_workflow_runs(mnist_dir, tmp_path):
    folder = copy_workflow("VAE_MNIST_legacy", tmp_path)
    run = execute(folder, ["-workflow.variable=epochs,1,int",
                           "-workflow.variable=train_limit,300,int",
                           "-workflow.variable=eval_limit,100,int",
                           "-workflow.variable=batch_size,100,int",
                           "-workflow.variable=device,cpu,String",
                           f"-workflow.variable=data_dir,{mnist_dir},String"], tmp_path)
    source = next(n for n, node in run.nodes.items() if node.factory == PYTHON_SOURCE)
    loss = run.outputs[source][0].to_pandas()
    assert loss["epoch"].tolist() == [1] and list(loss.index) == ["Row0"]
    assert np.isfinite(loss["test_loss"]).all() and loss["train_images"].tolist() == [300]
    assert list(run.checked_views.values()) == [["epoch", "train_loss", "test_loss"]]


# ----------------------------------------------------------------------------- experiments
def test_experiments_workflow_runs_the_grid_and_keeps_finished_configurations(mnist_dir,
                                                                              tmp_path):
    folder = copy_workflow("VAE_MNIST_experiments", tmp_path)
    small = ["-workflow.variable=latent_dims,2,String", '-workflow.variable=betas,"1,4",String',
             "-workflow.variable=epochs,1,int", "-workflow.variable=train_limit,300,int",
             "-workflow.variable=eval_limit,100,int", "-workflow.variable=batch_size,100,int",
             "-workflow.variable=device,cpu,String", "-workflow.variable=iw_k,3,int",
             "-workflow.variable=iw_images,10,int",
             f"-workflow.variable=data_dir,{mnist_dir},String"]
    run = execute(folder, small, tmp_path)
    node = run.node("Run experiments")
    exp = as_frame(run.outputs[node][0])
    assert exp["config"].tolist() == ["z2_beta1", "z2_beta4"]
    assert exp["latent"].tolist() == ["z=2", "z=2"] and (exp["epochs"] == 1).all()
    claims = as_frame(run.outputs[node][1])
    assert set(claims["kind"]) == {"claim", "target"} and claims["verdict"].notna().all()
    assert all(png.startswith(PNG) for png in run.outputs[node][2:5])
    assert run.pushed[node] == {"sweep_trained": 2, "sweep_kept": 0}
    views = {run.nodes[n].label: c for n, c in run.checked_views.items()}
    assert views["Reconstruction vs KL"] == ["kl", "recon", "latent"]
    assert (folder / "data" / "sweep" / "experiments.csv").is_file()
    # executing again (after a cancel, a crash, or to add a β) keeps what is finished
    again = execute(folder, [a.replace('"1,4"', '"1,4,2"') for a in small], tmp_path)
    assert again.pushed[node] == {"sweep_trained": 1, "sweep_kept": 2}
    assert as_frame(again.outputs[node][0])["config"].tolist() == ["z2_beta1", "z2_beta4",
                                                             "z2_beta2"]  # the grid's order
