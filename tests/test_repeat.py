"""`vae-mnist repeat`: one recipe over several seeds, resumable, with a summary that matches
its rows."""

import pandas as pd
import pytest
from test_cli import assert_user_error, cli

from vae_core.errors import ConfigError, RunDirError
from vae_core.experiments import repeat as repeat_mod
from vae_core.experiments.repeat import run_repeats

QUICK = dict(epochs=1, train_limit=1500, eval_limit=300, device="cpu")


@pytest.fixture(scope="module")
def repeated(tmp_path_factory, mnist_dir, small_config):
    out = tmp_path_factory.mktemp("repeat") / "r"
    base = small_config.replace(**QUICK)
    summary = run_repeats(out, base, [2, 3], [0, 1], data_dir=mnist_dir, log=lambda m: None)
    return out, base, summary


def test_rows_and_summary_agree(repeated):
    out, _, summary = repeated
    runs = pd.read_csv(out / "repeats.csv")
    assert list(zip(runs["latent_dim"], runs["seed"], strict=True)) == [(2, 0), (2, 1), (3, 0),
                                                                      (3, 1)]
    assert (runs["neg_elbo"] - runs["recon"] - runs["kl"]).abs().max() < 1e-3
    assert (runs["eval_images"] == 300).all() and (runs["lr_schedule"] == "constant").all()
    # another seed is another split, init and noise: the numbers differ
    assert runs.loc[0, "neg_elbo"] != runs.loc[1, "neg_elbo"]
    md = (out / "summary.md").read_text()
    assert "batch_size = 128, learning_rate = 0.001, lr_schedule = constant" in md
    for r in runs.itertuples():
        assert f"| {r.latent_dim} | {r.seed} | {r.neg_elbo:.2f} | {r.recon:.2f} |" in md
    written = pd.read_csv(out / "summary.csv")
    pd.testing.assert_frame_equal(written, summary, check_dtype=False)
    for z in (2, 3):
        values = runs.loc[runs["latent_dim"] == z, "neg_elbo"]
        row = summary.set_index("latent_dim").loc[z]
        assert row["mean"] == pytest.approx(values.mean())
        assert row["sd"] == pytest.approx(values.std(ddof=1))
        assert (row["min"], row["max"], row["runs"], row["seeds"]) == \
            (pytest.approx(values.min()), pytest.approx(values.max()), 2, "0 1")


def test_neg_elbo_is_the_last_row_of_the_runs_loss_table(repeated, mnist_dir):
    """repeat reports the one held-out estimator: the same number the loss table ends on."""
    from vae_core.data.splits import load_mnist
    from vae_core.outputs.tables import read_table
    from vae_core.training.loop import train

    out, base, _ = repeated
    row = read_table(out / "repeats.csv").iloc[1]  # z = 2, seed 1
    config = base.replace(latent_dim=2, seed=1)
    last = train(config, load_mnist(config, mnist_dir), progress=False).history[-1]
    assert (row["recon"], row["kl"]) == (last["test_recon"], last["test_kl"])
    assert row["neg_elbo"] == last["test_recon"] + last["test_kl"]


def test_columns_and_recipe_come_from_the_setting_groups(repeated):
    import json

    from vae_core.config import RECIPE_SETTINGS

    # the column list of every repeats.csv written so far: old folders still resume
    assert repeat_mod.RUN_COLUMNS == [
        "latent_dim", "seed", "beta", "epochs", "batch_size", "learning_rate", "lr_schedule",
        "eval_images", "neg_elbo", "recon", "kl", "final_train_loss", "train_seconds"]
    out, base, _ = repeated
    recipe = json.loads((out / "repeat.json").read_text())["recipe"]
    assert recipe == {k: getattr(base, k) for k in RECIPE_SETTINGS}


def test_folder_written_before_a_setting_existed_resumes(repeated, mnist_dir, tmp_path):
    """repeat.json of an older version lacks later settings: they read as their defaults."""
    import json
    import shutil

    out, base, _ = repeated
    old = tmp_path / "old"
    shutil.copytree(out, old)
    spec = json.loads((old / "repeat.json").read_text())
    del spec["recipe"]["lr_schedule"], spec["recipe"]["binarize"]
    (old / "repeat.json").write_text(json.dumps(spec))
    summary = run_repeats(old, base, [2, 3], [0, 1], data_dir=mnist_dir, log=lambda m: None)
    assert summary["runs"].tolist() == [2, 2]  # nothing retrained, nothing refused
    with pytest.raises(RunDirError, match="lr_schedule: 'constant' before, 'cosine' now"):
        run_repeats(old, base.replace(lr_schedule="cosine"), [2], [0], data_dir=mnist_dir)


def test_rerun_keeps_finished_rows_and_adds_new_seeds(repeated, mnist_dir, monkeypatch):
    out, base, _ = repeated
    before = pd.read_csv(out / "repeats.csv")
    trained = []
    real_train = repeat_mod.train

    def counting_train(config, data, **kw):
        trained.append((config.latent_dim, config.seed))
        return real_train(config, data, **kw)

    monkeypatch.setattr(repeat_mod, "train", counting_train)
    summary = run_repeats(out, base, [2], [0, 1, 2], data_dir=mnist_dir, log=lambda m: None)
    assert trained == [(2, 2)]
    after = pd.read_csv(out / "repeats.csv")
    pd.testing.assert_frame_equal(after.iloc[[0, 1, 3, 4]].reset_index(drop=True), before)
    assert summary.set_index("latent_dim").loc[2, "runs"] == 3


def test_other_recipe_in_the_same_folder_is_refused(repeated, mnist_dir):
    out, base, _ = repeated
    with pytest.raises(RunDirError, match=r"batch_size: 128 before, 64 now"):
        run_repeats(out, base.replace(batch_size=64), [2], [0], data_dir=mnist_dir)
    with pytest.raises(ConfigError, match="must not repeat"):
        run_repeats(out, base, [2], [0, 0], data_dir=mnist_dir)


def test_cli_repeat(tmp_path, mnist_dir):
    out = tmp_path / "rep"
    proc = cli("repeat", "--out", out, "--data-dir", mnist_dir, "--latent-dims", "2",
               "--seeds", "3", "4", "--epochs", "1", "--train-limit", "1000", "--eval-limit",
               "200", "--lr-schedule", "cosine", "--quiet")
    assert proc.returncode == 0, proc.stderr
    runs = pd.read_csv(out / "repeats.csv")
    assert list(runs["seed"]) == [3, 4] and (runs["lr_schedule"] == "cosine").all()
    mean = runs["neg_elbo"].mean()
    assert f"z=2: held-out neg-ELBO {mean:.2f} ± " in proc.stdout
    assert_user_error(cli("repeat", "--out", out, "--data-dir", mnist_dir, "--seed", "1"),
                      "--seeds")


def test_tuned_recipe_file_changes_only_the_optimisation():
    from pathlib import Path

    from vae_core.config import TrainConfig, load_config_file

    path = Path(__file__).resolve().parent.parent / "configs" / "tuned.toml"
    cfg = TrainConfig.from_dict(load_config_file(path), source=str(path))
    assert (cfg.batch_size, cfg.learning_rate, cfg.lr_schedule) == (32, 0.002, "cosine")
    # model, data split, epochs and seed stay the lab's
    assert cfg.replace(batch_size=128, learning_rate=1e-3, lr_schedule="constant") == TrainConfig()
