"""Metrics of vae_core.evaluation.estimators on small data, each checked against an answer
known in advance."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vae_core.evaluation import estimators as E
from vae_core.model.network import VAE


@pytest.fixture(scope="module")
def trained(small_config, small_data):
    """A VAE trained briefly on the 2,000-image subset (z = 4, one epoch)."""
    from vae_core.training.loop import train

    cfg = small_config.replace(latent_dim=4, epochs=1)
    return train(cfg, small_data, progress=False).model


def _collapsed(latent_dim: int = 3) -> VAE:
    """A VAE whose posterior is the prior (μ = 0, log σ² = 0) and whose decoder ignores z."""
    torch.manual_seed(0)
    m = VAE(latent_dim, 16).eval()
    with torch.no_grad():
        for lin in (m.encoder.fc_mu, m.encoder.fc_logvar, m.decoder.fc1):
            lin.weight.zero_()
            lin.bias.zero_()
        m.decoder.fc2.bias.copy_(torch.linspace(-3, 3, 784))
    return m


def test_zero_kl_model_has_no_active_units(small_data):
    x = small_data.eval.images[:200]
    m = _collapsed()
    dims = E.latent_dimensions(m, x)
    assert list(dims.columns) == ["dim", "mu_variance", "kl", "active"]
    assert dims["kl"].abs().max() < 1e-12
    assert E.active_units(m, x) == 0
    assert E.heldout_loss(m, x, seed=0)["kl"] == pytest.approx(0.0, abs=1e-6)


def test_active_units_counts_only_dimensions_that_vary(small_data):
    x = small_data.eval.images[:300]
    m = _collapsed(latent_dim=3)
    with torch.no_grad():
        m.encoder.fc1.weight.normal_(0, 0.05)
        m.encoder.fc_mu.weight[1].normal_(0, 1.0)  # only unit 2 depends on the image
    dims = E.latent_dimensions(m, x)
    assert dims["active"].tolist() == [False, True, False]
    assert E.active_units(m, x) == 1
    # log σ² = 0 everywhere, so KL(N(μ, 1) ‖ N(0, 1)) = μ² / 2 per image
    mu = E.encode(m, x)[0].double()
    assert dims["mu_variance"].tolist() == pytest.approx(mu.var(0, unbiased=False).tolist())
    assert dims["kl"].tolist() == pytest.approx([0.0, float((mu[:, 1] ** 2 / 2).mean()), 0.0],
                                                abs=1e-12, rel=1e-9)


def test_bound_of_collapsed_model_is_the_exact_bce_for_every_k_and_chunking(small_data):
    """With q = p(z) and a decoder that ignores z, every importance weight equals the BCE
    likelihood, so -L_k is that BCE exactly, however the k samples are chunked."""
    x = small_data.eval.images[:50]
    m = _collapsed()
    exact = F.binary_cross_entropy_with_logits(m.decoder.fc2.bias.expand_as(x), x,
                                               reduction="none").sum(1)
    for k, kwargs in ((1, {}), (7, {"batch_size": 8, "max_elements": 20}), (300, {})):
        got = E.importance_bound_per_image(m, x, k, torch.Generator().manual_seed(1), **kwargs)
        assert torch.allclose(got, exact, atol=1e-3), k


def test_l1_equals_the_elbo_in_expectation(trained, small_data):
    x = small_data.eval.images[:250].repeat(16, 1)  # 4,000 draws
    l1 = E.importance_bound_per_image(trained, x, 1, torch.Generator().manual_seed(3)).double()
    elbo = E.heldout_loss(trained, x, seed=4)["neg_elbo"]
    se = float(l1.std()) / math.sqrt(len(l1))
    assert abs(float(l1.mean()) - elbo) < 4 * se + 0.05


def test_lk_is_at_least_the_elbo_and_non_decreasing_in_k(trained, small_data):
    x = small_data.eval.images[:200]
    elbo = E.heldout_loss(trained, x, seed=5)["neg_elbo"]
    b = {k: E.importance_sampled_bound(trained, x, k=k, seed=6)["value"] for k in (1, 10, 100)}
    # -L_k (nats) is an upper bound that shrinks as k grows
    assert b[10] <= b[1] + 0.05 and b[100] <= b[10] + 0.05
    assert b[100] < elbo
    assert b[100] > 45.0  # cannot beat the per-pixel entropy floor of ANCHORS.md (45.5)


def test_bound_is_named_a_bce_bound_unless_binarized(trained, small_data):
    x = small_data.eval.images[:20]
    cont = E.importance_sampled_bound(trained, x, k=5)
    assert "BCE bound" in cont["name"] and "NLL" not in cont["name"]
    assert "NLL" in E.importance_sampled_bound(trained, x.bernoulli(), k=5, binarized=True)["name"]


def test_importance_bound_rejects_k_below_one(trained, small_data):
    with pytest.raises(ValueError):
        E.importance_bound_per_image(trained, small_data.eval.images[:2], 0)


def _blobs(n=200, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.eye(dim)[: 3] * 10 if dim >= 3 else torch.randn(3, dim, generator=g) * 10
    x = centres[y] + torch.randn(n, dim, generator=g)
    return x, y


def test_probes_are_perfect_on_separable_data():
    xtr, ytr = _blobs(300, seed=1)
    xte, yte = _blobs(90, seed=2)
    assert E.knn_accuracy(xtr, ytr, xte, yte, k=5) == 1.0
    assert E.logistic_accuracy(xtr, ytr, xte, yte) == 1.0


def test_probes_are_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(0)
    xtr, xte = torch.randn(2000, 2, generator=g), torch.randn(1000, 2, generator=g)
    ytr, yte = torch.randint(4, (2000,), generator=g), torch.randint(4, (1000,), generator=g)
    assert abs(E.knn_accuracy(xtr, ytr, xte, yte) - 0.25) < 0.06
    assert abs(E.logistic_accuracy(xtr, ytr, xte, yte) - 0.25) < 0.06


def test_knn_majority_vote_and_tie_break_by_nearest():
    xtr = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    ytr = torch.tensor([0, 0, 1, 1, 2])
    # k=3 around 0.4: neighbours 0 (0), 1 (0), 2 (1) -> class 0 by majority
    assert E.knn_accuracy(xtr, ytr, torch.tensor([[0.4]]), torch.tensor([0]), k=3) == 1.0
    # k=2 around 1.6: neighbours 2 (class 1, nearer) and 1 (class 0) tie -> nearer wins
    assert E.knn_accuracy(xtr, ytr, torch.tensor([[1.6]]), torch.tensor([1]), k=2) == 1.0


def test_pca_finds_the_main_axis():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(500, 1, generator=g)
    x = torch.zeros(500, 784)
    x[:, 5] = 3 * t[:, 0] + 1
    x[:, 6] = 0.01 * torch.randn(500, generator=g)
    pca = E.PCA(x)
    assert abs(float(pca.components[0, 5])) == pytest.approx(1.0, abs=1e-4)
    z = pca.transform(x, 1)
    assert z.shape == (500, 1) and float(z.var()) == pytest.approx(float(x[:, 5].var()), rel=1e-3)


def test_latent_probe_table(trained, small_data):
    """Each row is the two probes on its features: μ(x) of the model, and the PCA projection of
    the same dimension fit on the training images."""
    tr, ev = small_data.train, small_data.eval
    xtr, ytr = tr.images[:1000], tr.labels[:1000]
    df = E.latent_probe(trained, xtr, ytr, ev.images, ev.labels)
    assert df["features"].tolist() == ["vae_mu", "pca"]
    assert df["dim"].tolist() == [4, 4]
    pca = E.PCA(xtr)
    feats = {"vae_mu": (E.encode(trained, xtr)[0], E.encode(trained, ev.images)[0]),
             "pca": (pca.transform(xtr, 4), pca.transform(ev.images, 4))}
    for row in df.itertuples():
        ftr, fte = feats[row.features]
        assert row.knn_accuracy == E.knn_accuracy(ftr, ytr, fte, ev.labels, k=5)
        assert row.logreg_accuracy == E.logistic_accuracy(ftr, ytr, fte, ev.labels)


def test_interpolation_endpoints_and_table(trained, small_data):
    a, b = small_data.eval.images[0], small_data.eval.images[1]
    z, imgs = E.interpolate(trained, a, b, steps=7)
    mu = E.encode(trained, torch.stack([a, b]))[0]
    assert torch.allclose(z[0], mu[0], atol=1e-6) and torch.allclose(z[-1], mu[1], atol=1e-6)
    assert torch.allclose(imgs[0], trained.decode(mu[:1])[0], atol=1e-6)
    df = E.interpolation_table(z, imgs)
    assert len(df) == 7 and df["t"].iloc[-1] == 1.0
    assert list(df.columns[:2 + 4]) == ["step", "t", "z1", "z2", "z3", "z4"]
    assert df.shape[1] == 2 + 4 + 784
    with pytest.raises(ValueError):
        E.interpolate(trained, a, b, steps=1)


class _LinearDecoderVAE(VAE):
    """A VAE whose decoder is affine in z: decode(z) = 0.5 + z W, W = gain · (orthonormal rows)."""

    def __init__(self, latent_dim: int, gain: float) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            super().__init__(latent_dim, 16)
            q, _ = torch.linalg.qr(torch.randn(784, latent_dim, dtype=torch.float64))
        self.register_buffer("w", gain * q.T.float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 + z @ self.w


class _StepDecoderVAE(VAE):
    """A VAE whose decoded image jumps once, where z1 crosses 0, and is constant elsewhere."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z[..., :1] > 0).to(z.dtype).expand(*z.shape[:-1], 784)


def test_roughness_is_one_for_a_decoder_linear_along_the_path(small_data):
    x = small_data.eval.images
    r = E.interpolation_roughness(_LinearDecoderVAE(3, gain=0.7), x, n_pairs=50, steps=8)
    assert r["roughness"] == pytest.approx(1.0, abs=1e-5)  # every step is the same size


def test_roughness_of_a_single_jump_is_the_number_of_steps(small_data):
    x = small_data.eval.images
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = _StepDecoderVAE(2, 16).eval()
    with torch.no_grad():  # centre μ1 on the data: half the images on each side of z1 = 0
        m.encoder.fc_mu.bias[0] -= E.encode(m, x)[0][:, 0].median()
    r = E.interpolation_roughness(m, x, n_pairs=200, steps=16)
    assert 0 < r["pairs"] < 200  # pairs on one side of z1 = 0 never change: left out
    # a straight path crosses z1 = 0 at most once: one of its 15 steps jumps, max / mean = 15
    assert r["roughness"] == pytest.approx(15.0, rel=1e-9)


def test_decoder_gain_is_the_lipschitz_constant_of_a_linear_decoder(small_data):
    x = small_data.eval.images
    for gain in (0.5, 3.0):
        assert E.decoder_gain(_LinearDecoderVAE(4, gain), x, n=100) == pytest.approx(gain,
                                                                                     rel=1e-3)
    flat = _collapsed()  # a decoder that ignores z: no change along any path
    assert E.decoder_gain(flat, x, n=100) == pytest.approx(0.0, abs=1e-9)
    assert E.interpolation_roughness(flat, x, n_pairs=10)["pairs"] == 0


def test_heldout_loss_streams(trained, small_data):
    """One estimator: the stream names its noise; the same seed and stream give the same number,
    another stream other noise, and neg_elbo is recon + KL whatever β weights the loss."""
    x = small_data.eval.images[:300]
    a = E.heldout_loss(trained, x, seed=3)
    assert a == E.heldout_loss(trained, x, seed=3, stream="heldout")
    assert a["neg_elbo"] == a["recon"] + a["kl"] == pytest.approx(a["loss"], rel=1e-6)  # β = 1
    b = E.heldout_loss(trained, x, seed=3, stream="iw_subset")
    assert b["neg_elbo"] != a["neg_elbo"] and b == E.heldout_loss(trained, x, 3, stream="iw_subset")
    w = E.heldout_loss(trained, x, seed=3, beta=4.0)
    assert (w["recon"], w["kl"], w["neg_elbo"]) == (a["recon"], a["kl"], a["neg_elbo"])
    assert w["loss"] == pytest.approx(a["recon"] + 4.0 * a["kl"], rel=1e-6)


def test_binarized_mode(mnist_dir, small_config, tmp_path):
    from vae_core.config import TrainConfig
    from vae_core.data.splits import load_mnist
    from vae_core.errors import CheckpointError
    from vae_core.training.checkpoint import load_model
    from vae_core.training.loop import train

    cfg = small_config.replace(binarize=True, epochs=1, train_limit=500, eval_limit=100)
    d1, d2 = load_mnist(cfg, mnist_dir), load_mnist(cfg, mnist_dir)
    ev = d1.eval.images
    assert set(ev.unique().tolist()) == {0.0, 1.0}  # a fixed binarized evaluation set
    assert torch.equal(ev, d2.eval.images)
    assert d1.train.images.unique().numel() > 2  # training stays grey, binarized per batch
    ckpt = tmp_path / "b.pt"
    train(cfg, d1, checkpoint=ckpt, progress=False)
    model, saved = load_model(ckpt)
    assert saved.binarize is True and saved == cfg  # config round-trips through the checkpoint
    with pytest.raises(CheckpointError, match="binarize"):
        train(cfg.replace(binarize=False, epochs=2), d1, checkpoint=ckpt, resume=True,
              progress=False)
    assert TrainConfig.from_dict({"binarize": "false"}).binarize is False
    assert TrainConfig().binarize is False
