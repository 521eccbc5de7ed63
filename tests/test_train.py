"""Training: learns, is deterministic, resumes exactly, stops on divergence; checkpoint safety."""

import io

import pandas as pd
import pytest
import torch

from vae_core.errors import CheckpointError, TrainingError
from vae_core.model.network import VAE
from vae_core.outputs.tables import loss_table
from vae_core.training import checkpoint as ckpt_mod
from vae_core.training.loop import train

DETERMINISTIC = ["epoch", "train_loss", "train_recon", "train_kl", "test_loss", "test_recon",
                 "test_kl"]


def _table(history):
    return loss_table(history)[DETERMINISTIC]


@pytest.fixture(scope="module")
def three_epochs(small_config, small_data, tmp_path_factory):
    cfg = small_config.replace(epochs=3)
    path = tmp_path_factory.mktemp("ref") / "ckpt.pt"
    return cfg, train(cfg, small_data, checkpoint=path, progress=False), path


def test_training_lowers_the_loss(three_epochs):
    _, result, _ = three_epochs
    t = loss_table(result.history)
    assert list(t["epoch"]) == [1, 2, 3]
    assert t["train_loss"].iloc[-1] < t["train_loss"].iloc[0] - 10
    assert t["test_loss"].iloc[-1] < t["test_loss"].iloc[0]
    # per-image nats, recon + KL = loss at beta 1
    assert (t["test_recon"] + t["test_kl"] - t["test_loss"]).abs().max() < 1e-3


def test_checkpoint_holds_the_model_of_the_last_loss_row(three_epochs, small_data):
    """The saved model, evaluated with the one held-out estimator, gives the last row exactly."""
    from vae_core.evaluation.estimators import heldout_loss
    from vae_core.training.checkpoint import load_model

    cfg, result, path = three_epochs
    model, saved = load_model(path)
    assert saved == cfg
    last = result.history[-1]
    again = heldout_loss(model, small_data.eval.images, cfg.seed, cfg.beta)
    assert (again["loss"], again["recon"], again["kl"]) == \
        (last["test_loss"], last["test_recon"], last["test_kl"])


def test_same_config_gives_identical_loss_table(three_epochs, small_data):
    cfg, result, _ = three_epochs
    again = train(cfg, small_data, progress=False)
    pd.testing.assert_frame_equal(_table(result.history), _table(again.history))
    other = train(cfg.replace(seed=5), small_data, progress=False)
    assert not _table(result.history).equals(_table(other.history))


def test_resume_after_interruption_equals_uninterrupted_run(three_epochs, small_data, tmp_path):
    cfg, reference, ref_path = three_epochs
    path = tmp_path / "ckpt.pt"

    def stop_after_first_epoch(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, small_data, checkpoint=path, progress=False, on_epoch=stop_after_first_epoch)
    assert ckpt_mod.load_checkpoint(path)["epoch"] == 1
    resumed = train(cfg, small_data, checkpoint=path, resume=True, progress=False)
    pd.testing.assert_frame_equal(_table(reference.history), _table(resumed.history))
    ref_weights = ckpt_mod.load_checkpoint(ref_path)["model"]
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, ref_weights[name]), name


def test_resume_with_other_architecture_is_refused(three_epochs, small_data):
    cfg, _, path = three_epochs
    with pytest.raises(CheckpointError, match="latent_dim: checkpoint 2, latent_dim=5. --resume "
                                              "takes every setting from the checkpoint"):
        train(cfg.replace(latent_dim=5), small_data, checkpoint=path, resume=True,
              progress=False)


def test_divergence_stops_and_keeps_last_good_checkpoint(small_config, small_data, tmp_path):
    path = tmp_path / "ckpt.pt"
    train(small_config.replace(epochs=1), small_data, checkpoint=path, progress=False)
    before = path.read_bytes()
    with pytest.raises(TrainingError, match="diverged.*Lower the learning rate"):
        train(small_config.replace(learning_rate=1e6), small_data, checkpoint=path,
              progress=False)
    assert path.read_bytes() == before


def test_checkpoint_refuses_code_payload(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt_mod.FORMAT, "format_version": 1, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="could run code"):
        ckpt_mod.load_checkpoint(path)


def test_checkpoint_truncated_and_newer_version(three_epochs, tmp_path):
    _, _, path = three_epochs
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="is not a vae-mnist checkpoint: it is damaged, truncated"):
        ckpt_mod.load_checkpoint(cut)
    state = ckpt_mod.load_checkpoint(path)
    newer = tmp_path / "newer.pt"
    buf = io.BytesIO()
    torch.save({**state, "format_version": 99}, buf)
    newer.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="newer than this"):
        ckpt_mod.load_checkpoint(newer)


def test_failed_checkpoint_write_keeps_previous_file(three_epochs, monkeypatch):
    _, _, path = three_epochs
    before = path.read_bytes()

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", boom)
    with pytest.raises(OSError):
        ckpt_mod.save_checkpoint(path, {"x": 1})
    assert path.read_bytes() == before
    assert len(list(path.parent.glob(".*tmp"))) == 0


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os
    import stat

    from vae_core.files import atomic_write_text

    target = tmp_path / "t.txt"
    atomic_write_text(target, "a")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_cosine_schedule_rates():
    import math

    from vae_core.config import TrainConfig
    from vae_core.training.loop import _lr_schedule

    assert _lr_schedule(TrainConfig(), 10) is None  # the lab: constant rate
    rate = _lr_schedule(TrainConfig(epochs=4, learning_rate=0.002, lr_schedule="cosine"), 10)
    rates = [rate(t) for t in range(40)]
    assert rates[0] == pytest.approx(0.002)
    assert rates[20] == pytest.approx(0.001)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[-1] == pytest.approx(0.001 * (1 + math.cos(math.pi * 39 / 40)), rel=1e-12)


def test_cosine_run_uses_the_schedule_and_resumes_exactly(small_config, small_data, tmp_path):
    import math

    cfg = small_config.replace(epochs=3, lr_schedule="cosine", learning_rate=0.002)
    path = tmp_path / "ckpt.pt"
    reference = train(cfg, small_data, checkpoint=path, progress=False)
    steps = 3 * math.ceil(2000 / cfg.batch_size)
    last_rate = ckpt_mod.load_checkpoint(path)["optimizer"]["param_groups"][0]["lr"]
    assert last_rate == pytest.approx(0.001 * (1 + math.cos(math.pi * (steps - 1) / steps)))
    constant = train(cfg.replace(lr_schedule="constant"), small_data, progress=False)
    assert not _table(reference.history).equals(_table(constant.history))

    def stop_after_second_epoch(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    other = tmp_path / "interrupted.pt"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, small_data, checkpoint=other, progress=False, on_epoch=stop_after_second_epoch)
    with pytest.raises(CheckpointError, match=r"epochs=5: under lr_schedule='cosine' .* stay 3"):
        train(cfg.replace(epochs=5), small_data, checkpoint=other, resume=True, progress=False)
    resumed = train(cfg, small_data, checkpoint=other, resume=True, progress=False)
    pd.testing.assert_frame_equal(_table(reference.history), _table(resumed.history))


def test_resume_may_train_longer_but_not_shorter(three_epochs, small_data, tmp_path):
    cfg, reference, ref_path = three_epochs
    path = tmp_path / "ckpt.pt"
    path.write_bytes(ref_path.read_bytes())
    longer = train(cfg.replace(epochs=4), small_data, checkpoint=path, resume=True,
                   progress=False)
    assert [r["epoch"] for r in longer.history] == [1, 2, 3, 4]
    pd.testing.assert_frame_equal(_table(longer.history[:3]), _table(reference.history))
    with pytest.raises(CheckpointError, match="already trained 4 epochs, so give at least 4"):
        train(cfg.replace(epochs=2), small_data, checkpoint=path, resume=True, progress=False)
    # the runtime may change: device is not part of what a resume must match
    from vae_core.config import RESUME_MAY_CHANGE, RESUME_MUST_MATCH

    assert set(RESUME_MAY_CHANGE) == {"epochs", "device"}
    assert "device" not in RESUME_MUST_MATCH and "latent_dim" in RESUME_MUST_MATCH


def test_training_leaves_the_global_random_state_alone(small_config, small_data):
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    train(small_config.replace(epochs=1), small_data, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.initial_seed() == 1234


def test_loss_table_held_out_row_is_the_one_estimator(small_config, small_data):
    """The last loss-table row and estimators.heldout_loss give the same number for a model."""
    from vae_core.evaluation.estimators import heldout_loss

    cfg = small_config.replace(epochs=1, beta=2.0)
    result = train(cfg, small_data, progress=False)
    last = result.history[-1]
    again = heldout_loss(result.model, small_data.eval.images, cfg.seed, cfg.beta)
    assert (last["test_loss"], last["test_recon"], last["test_kl"]) == \
        (again["loss"], again["recon"], again["kl"])
    assert again["neg_elbo"] == again["recon"] + again["kl"] != again["loss"]


def test_fused_adam_only_where_torch_supports_it(small_config, small_data, tmp_path,
                                                 monkeypatch):
    from vae_core.training import loop as train_mod

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for version, expected in (("2.3.1", False), ("2.4.0", True), ("2.14.1+cu130", True)):
        monkeypatch.setattr(train_mod.torch, "__version__", version)
        assert train_mod.fused_adam_supported(cpu) is expected
        assert train_mod.fused_adam_supported(cuda) is True
    monkeypatch.setattr(train_mod.torch, "__version__", "2.3.1")
    path = tmp_path / "old.pt"
    old = train(small_config.replace(epochs=1), small_data, checkpoint=path, progress=False)
    assert not ckpt_mod.load_checkpoint(path)["optimizer"]["param_groups"][0]["fused"]
    monkeypatch.undo()
    new = train(small_config.replace(epochs=1), small_data, checkpoint=path, progress=False)
    assert ckpt_mod.load_checkpoint(path)["optimizer"]["param_groups"][0]["fused"]
    # the same maths either way
    pd.testing.assert_frame_equal(_table(old.history), _table(new.history), rtol=1e-5)


def test_training_follows_the_model_it_is_given(small_config, small_data, monkeypatch):
    """The step is autograd through the model's own forward: change the architecture and the
    training changes with it (a hand-written step would keep the old maths without a word)."""
    from torch import nn

    from vae_core.model.loss import vae_loss
    from vae_core.training import loop as train_mod

    def tanh_model(config):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = VAE.from_config(config)
            model.decoder.fc1 = nn.Sequential(model.decoder.fc1, nn.Tanh())
        return model

    cfg = small_config.replace(epochs=1, train_limit=256, batch_size=128)
    monkeypatch.setattr(train_mod, "new_model", tanh_model)
    trained = train(cfg, small_data.__class__(small_data.train.subset(256), small_data.eval),
                    progress=False).model
    # the same two steps written out by hand, lab style
    from vae_core import seeds

    model = tanh_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=True)
    order = torch.randperm(256, generator=seeds.generator(cfg.seed, "shuffle"))
    noise = seeds.generator(cfg.seed, "noise")
    for idx in order.split(128):
        x = small_data.train.images[idx]
        logits, mu, logvar = model(x, generator=noise)
        opt.zero_grad()
        vae_loss(logits, x, mu, logvar).total.backward()
        opt.step()
    for (name, a), b in zip(model.state_dict().items(), trained.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
