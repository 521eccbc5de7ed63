"""Scoring how unusual an image is: reference scores stored with a model, the Score node's step,
`vae-mnist score` (the same numbers), the measures (AUROC, AUPRC) and the leave-one-digit-out
benchmark on a tiny configuration."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from _knime_steps import PARAMS

from vae_core import cli
from vae_core.config import ScoreConfig
from vae_core.errors import ConfigError, TableError, VAEError
from vae_core.evaluation.scores import (
    REFERENCE_KEY,
    REFERENCE_LEVELS,
    Reference,
    auroc,
    average_precision,
    reference_scores,
)
from vae_core.nodes.score import IMAGE_COLUMNS, score_settings, score_step
from vae_core.outputs.tables import PIXEL_COLUMNS, read_table, write_table
from vae_core.training.checkpoint import load_checkpoint
from vae_core.training.model_file import TrainedVAE, load_model_file


def test_auroc_and_auprc_match_hand_computed_examples():
    # descending: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-). Pairs (+, -) ranked right: 3 of 4.
    # AP: recall 0.5 at precision 1, recall 1 at precision 2/3 -> 0.5 + 0.5 * 2/3
    scores, novel = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert auroc(scores, novel) == pytest.approx(0.75)
    assert average_precision(scores, novel) == pytest.approx(5 / 6)
    # ties: the positive ties one negative (half a pair) and beats the other -> 0.75; one
    # threshold takes both tied rows: precision 1/2 at recall 1
    assert auroc([1, 1, 0], [1, 0, 0]) == pytest.approx(0.75)
    assert average_precision([1, 1, 0], [1, 0, 0]) == pytest.approx(0.5)
    assert auroc([3, 2, 1], [1, 1, 0]) == 1.0 and auroc([1, 2, 3], [1, 1, 0]) == 0.0
    with pytest.raises(ValueError, match="both positive and negative"):
        auroc([1, 2], [1, 1])


def test_reference_percentile_and_threshold():
    data = {"levels": list(REFERENCE_LEVELS),
            "quantiles": [float(v) for v in np.quantile(np.arange(1001.0), REFERENCE_LEVELS)],
            "images": 1001}
    ref = Reference.from_data(data)
    assert ref.threshold(0.99) == pytest.approx(990.0)
    np.testing.assert_allclose(ref.percentile(np.array([-5.0, 500.0, 950.0, 5000.0])),
                               [0.1, 50.0, 95.0, 99.9])
    for q in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            ref.threshold(q)
    with pytest.raises(ConfigError, match="resolve quantiles 0.001 to 0.999"):
        ref.threshold(0.9995)
    with pytest.raises(VAEError, match="damaged"):
        Reference.from_data({**data, "quantiles": data["quantiles"][::-1]})


@pytest.fixture(scope="module")
def model_and_table(knime_model, images_df) -> tuple[dict, pd.DataFrame]:
    """The step tests' model with reference scores of some held-out images, and a table."""
    trained = TrainedVAE.from_record(knime_model)
    g = torch.Generator().manual_seed(3)
    held = torch.rand(400, 784, generator=g)
    record = {**knime_model, REFERENCE_KEY: reference_scores(trained.model(), held, 4)}
    return record, images_df


def test_score_step_appends_calibrated_scores_and_shows_the_most_unusual(model_and_table):
    record, table = model_and_table
    settings = score_settings({"unusual_quantile": 0.5, "unusual_rows": 5, "score_iw_k": 4})
    out = score_step(record, table, PARAMS, settings)
    scores = out.scores
    assert list(scores.columns) == [*table.columns, "neg_elbo", "recon", "kl", "neg_log_lik_k",
                                    "percentile", "is_unusual"]
    pd.testing.assert_frame_equal(scores[table.columns], table)
    np.testing.assert_allclose(scores["neg_elbo"], scores["recon"] + scores["kl"])
    assert (scores["kl"] > 0).all() and scores["percentile"].between(0.1, 99.9).all()
    ref = Reference.from_data(record[REFERENCE_KEY])
    threshold = ref.threshold(0.5)
    assert out.flow_variables == {"unusual_count": int((scores["neg_elbo"] > threshold).sum()),
                                  "unusual_share": float((scores["neg_elbo"] > threshold).mean()),
                                  "unusual_threshold": threshold}
    assert (scores["is_unusual"] == (scores["percentile"] > 50)).all()
    unusual = out.unusual
    assert len(unusual) == 5 and unusual["neg_elbo"].is_monotonic_decreasing
    assert unusual["neg_elbo"].iloc[0] == scores["neg_elbo"].max()
    first = table.iloc[int(unusual["row"].iloc[0])]
    assert unusual["image_id"].iloc[0] == first["image_id"]
    cell = np.asarray(unusual["input"].iloc[0])[::2, ::2].ravel()
    np.testing.assert_array_equal(cell, first[PIXEL_COLUMNS].to_numpy(np.int64))
    assert all(unusual[c].iloc[0].size == (56, 56) for c in IMAGE_COLUMNS)
    assert out.png.startswith(b"\x89PNG")
    again = score_step(record, table, PARAMS, settings)  # deterministic for model and seed
    pd.testing.assert_frame_equal(again.scores, scores)


def test_cli_score_writes_the_node_steps_table(model_and_table, tmp_path, capsys):
    record, table = model_and_table
    model_file = tmp_path / "model.pt"
    torch.save(record, model_file)
    write_table(table, tmp_path / "in.csv")
    out = tmp_path / "scored.csv"
    assert cli.main(["score", model_file, "--table", tmp_path / "in.csv", "--out", out,
                     "--unusual-quantile", "0.9", "--score-iw-k", "4", "--device", "cpu"]) == 0
    assert "Scored 12 images" in capsys.readouterr().out
    step = score_step(record, table, PARAMS, ScoreConfig(unusual_quantile=0.9, score_iw_k=4))
    got = read_table(out)  # a CSV keeps the numbers exactly (not the string dtypes)
    assert list(got.columns) == list(step.scores.columns)
    for column in ("neg_elbo", "recon", "kl", "neg_log_lik_k", "percentile", "is_unusual",
                   "image_id", *PIXEL_COLUMNS):
        np.testing.assert_array_equal(got[column].to_numpy(), step.scores[column].to_numpy())


def test_bad_input_is_one_clear_error(model_and_table, tmp_path, capsys):
    record, table = model_and_table
    with pytest.raises(TableError, match="lacks 784 of the 784 pixel columns"):
        score_step(record, table.drop(columns=PIXEL_COLUMNS), PARAMS, ScoreConfig())
    with pytest.raises(TableError, match="lacks 1 of the 784"):
        score_step(record, table.drop(columns="pixel_783"), PARAMS, ScoreConfig())
    for bad in (1, 0, "1.5", "x"):
        with pytest.raises(ConfigError, match="unusual_quantile.*Fix the workflow variable"):
            score_settings({"unusual_quantile": bad})
    old = {k: v for k, v in record.items() if k != REFERENCE_KEY}
    with pytest.raises(VAEError, match="has no reference scores .* cannot be calibrated"):
        score_step(old, table, PARAMS, ScoreConfig())
    torch.save(old, tmp_path / "old.pt")
    write_table(table, tmp_path / "in.csv")
    for args, message in (
            (["old.pt"], "has no reference scores"),
            (["new.pt", "--unusual-quantile", "1"], "Invalid unusual_quantile=1.0"),
            (["new.pt", "--table", "missing.csv"], "--table missing.csv does not exist")):
        torch.save(record, tmp_path / "new.pt")
        argv = ["score", tmp_path / args[0], "--table", tmp_path / "in.csv",
                "--out", tmp_path / "o.csv", *args[1:]]
        if "--table" in args:
            argv = ["score", tmp_path / args[0], *args[1:], "--out", tmp_path / "o.csv"]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("vae-mnist: error: ") and message in err and "Traceback" not in err
        assert not (tmp_path / "o.csv").exists()


def test_training_stores_reference_scores_and_old_runs_get_them_on_resume(finished, tmp_path,
                                                                          mnist_dir, capsys):
    from vae_core.data.splits import load_mnist

    state = load_checkpoint(finished / "checkpoint.pt")
    trained = load_model_file(finished)
    assert trained.reference == state[REFERENCE_KEY]
    assert len(state[REFERENCE_KEY]["quantiles"]) == 999
    data = load_mnist(trained.config, mnist_dir)
    assert state[REFERENCE_KEY] == reference_scores(trained.model(), data.eval.images,
                                                    trained.config.seed)
    # an old run folder (no reference scores): still loads; resume adds them, nothing else moves
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    del state[REFERENCE_KEY]
    torch.save(state, old / "checkpoint.pt")
    assert load_model_file(old).reference is None
    assert cli.main(["score", old, "--out", tmp_path / "s.csv", "--data-dir", mnist_dir]) == 2
    assert "cannot be calibrated" in capsys.readouterr().err
    assert cli.main(["run", "--run-dir", old, "--resume", "--data-dir", mnist_dir, "-q"]) == 0
    again = load_checkpoint(old / "checkpoint.pt")
    assert again[REFERENCE_KEY] == trained.reference
    assert all(torch.equal(again["model"][k], state["model"][k]) for k in state["model"])
    assert cli.main(["score", old, "--out", tmp_path / "s.csv", "--data-dir", mnist_dir]) == 0
    scored = read_table(tmp_path / "s.csv")
    assert len(scored) == 10000 and set(scored["source"]) == {"test"}


def test_leave_one_digit_out_on_a_tiny_configuration(tmp_path, mnist_dir):
    from vae_core.config import TrainConfig
    from vae_core.evaluation.estimators import PCA
    from vae_core.experiments.novelty import pca_error, run_novelty

    x = torch.rand(50, 784, dtype=torch.float64)
    assert pca_error(PCA(x), x, 49).max() < 1e-8  # all components: nothing left to explain
    assert pca_error(PCA(x), x, 2).min() > 0
    base = TrainConfig(epochs=1, train_limit=1500, eval_limit=600, device="cpu")
    out = tmp_path / "novelty"
    logs = []
    runs = run_novelty(out, base, digits=[0, 1], seeds=[0, 1], iw_k=3, data_dir=mnist_dir,
                       log=logs.append)
    assert len(runs) == 4 and sorted(runs["digit"].tolist()) == [0, 0, 1, 1]
    assert runs.filter(like="auroc").stack().between(0, 1).all()
    assert (runs["novel_images"] == runs["digit"].map({0: 980, 1: 1135})).all()
    table = read_table(out / "novelty.csv")
    assert list(table["digit"]) == [0, 1] and (table["seeds"] == 2).all()
    md = (out / "novelty.md").read_text()
    assert "| 0 | " in md and "Calibration" in md
    page = (out / "novelty.html").read_text()
    assert page.count("<table") == 3 and "Leave-one-digit-out" in page
    from vae_core.outputs.report import write_report

    assert write_report(out).read_text() == page  # `vae-mnist report` of the benchmark folder
    marks = {p.name: p.read_text() for p in (out / "results").iterdir()}
    logs.clear()
    run_novelty(out, base, digits=[0, 1], seeds=[0, 1], iw_k=3, data_dir=mnist_dir,
                log=logs.append)  # a rerun keeps every finished run
    assert all("finished earlier" in m for m in logs) and len(logs) == 4
    assert {p.name: p.read_text() for p in (out / "results").iterdir()} == marks
    assert json.loads(marks["seed0_digit1.json"])["seed"] == 0
    with pytest.raises(VAEError, match="other settings"):
        run_novelty(out, base.replace(latent_dim=3), digits=[0], seeds=[0], iw_k=3,
                    data_dir=mnist_dir)
