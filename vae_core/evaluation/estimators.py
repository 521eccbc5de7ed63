"""Metric functions for a trained VAE: held-out loss, latent means, reconstructions, samples,
and the measures that judge a model (neg-ELBO, importance-sampled bound, active units, latent
probes, interpolation). ``run_metrics`` runs them all on one model with the run's seeds."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vae_core import seeds
from vae_core.model.loss import kl_divergence, vae_loss
from vae_core.model.network import VAE

EVAL_BATCH = 4096


def _device_of(model: VAE) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent means and log-variances of ``x`` (on CPU)."""
    device = _device_of(model)
    parts = [model.encode(c.to(device)) for c in x.split(batch_size)]
    mu = torch.cat([p[0] for p in parts]).cpu()
    logvar = torch.cat([p[1] for p in parts]).cpu()
    return mu, logvar


@torch.no_grad()
def reconstruct(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Decode the latent mean of each image: the deterministic reconstruction (on CPU)."""
    device = _device_of(model)
    return torch.cat([model.decode(model.encode(c.to(device))[0]).cpu()
                      for c in x.split(batch_size)])


@torch.no_grad()
def recon_bce(x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-image BCE (nats) between images and reconstructions given as probabilities."""
    return torch.nn.functional.binary_cross_entropy(recon.clamp(1e-7, 1 - 1e-7), x,
                                                    reduction="none").sum(dim=1)


@torch.no_grad()
def generate(model: VAE, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` codes from N(0, I) and decode them; returns (z, pixel probabilities) on CPU."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.latent_dim, generator=g)
    return z, model.decode(z.to(_device_of(model))).cpu()


@torch.no_grad()
def manifold(model: VAE, n: int = 20, lo: float = 0.05, hi: float = 0.95
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an n×n grid of 2-D codes at evenly spaced quantiles of N(0, 1) (z = 2 only).

    Rows run from high z2 (top) to low z2, columns from low z1 to high z1, so the image grid is
    oriented like the latent scatter plot.
    """
    if model.latent_dim != 2:
        raise ValueError("the 2-D manifold needs a model with latent_dim = 2")
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(lo, hi, n))
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], dim=1)
    return z, model.decode(z.to(_device_of(model))).cpu()


# ============================================================================= metrics
# Everything below is for judging a trained model. Units are nats per image.

LOG_2PI = math.log(2 * math.pi)


def heldout_loss(model: VAE, x: torch.Tensor, seed: int, beta: float = 1.0,
                 stream: str = "heldout") -> dict[str, float]:
    """The project's one held-out estimate: loss, recon, KL and neg-ELBO (= recon + KL, β = 1).

    One z sample per image from the run's ``stream`` (default "heldout", the same noise at every
    epoch), so the loss table's last row, the sweep, ``repeat`` and the docs report the same
    number for a model. The training loss of a β ≠ 1 model weights the KL; only recon + 1·KL is
    an ELBO, so ``neg_elbo`` is what models of different β are compared on.
    """
    noise = seeds.generator(seed, stream, device=_device_of(model))
    parts = _loss_per_image(model, _flat(x), beta, noise)
    return {**parts, "neg_elbo": parts["recon"] + parts["kl"]}


def _flat(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32).reshape(len(x), -1)


@torch.no_grad()
def _loss_per_image(model: VAE, x: torch.Tensor, beta: float = 1.0,
                    generator: torch.Generator | None = None,
                    batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Mean per-image loss, reconstruction (BCE) and KL, with one z sample per image (the sum
    behind ``heldout_loss``; call that, which fixes the noise)."""
    was_training = model.training
    model.eval()
    device = _device_of(model)
    sums = torch.zeros(3, device=device)
    for chunk in x.split(batch_size):
        chunk = chunk.to(device)
        logits, mu, logvar = model(chunk, generator=generator)
        sums += torch.stack(vae_loss(logits, chunk, mu, logvar, beta))
    model.train(was_training)
    total, recon, kl = (sums / max(len(x), 1)).tolist()
    return {"loss": total, "recon": recon, "kl": kl}


def _log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, s: int,
                 generator: torch.Generator | None) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for ``s`` samples z ~ q(z|x): shape [s, batch]."""
    std = torch.exp(0.5 * logvar)
    eps = torch.randn((s, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    z = mu + std * eps
    logits = model.decoder(z)  # [s, B, 784]
    log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                 reduction="none").sum(-1)
    log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
    return log_px + log_pz - log_qz


@torch.no_grad()
def importance_bound_per_image(model: VAE, x: torch.Tensor, k: int = 1000,
                               generator: torch.Generator | None = None,
                               batch_size: int = 100, max_elements: int = 2 ** 16
                               ) -> torch.Tensor:
    """-L_k per image (Burda et al. 2015): -log (1/k) Σ_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x).

    Memory stays bounded: images go in batches of ``batch_size`` and the k samples in chunks of
    at most ``max_elements`` decoded images, folded together with a running logsumexp.
    L_1 is the ELBO in expectation and L_k grows with k towards log p(x), so -L_k shrinks.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out = []
    for chunk in _flat(x).split(batch_size):
        chunk = chunk.to(device)
        mu, logvar = model.encode(chunk)
        per_draw = max(1, max_elements // len(chunk))
        acc = torch.full((len(chunk),), -math.inf, device=device)
        done = 0
        while done < k:
            s = min(per_draw, k - done)
            lw = _log_weights(model, chunk, mu, logvar, s, generator)
            acc = torch.logaddexp(acc, torch.logsumexp(lw, dim=0))
            done += s
        out.append((math.log(k) - acc).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def importance_sampled_bound(model: VAE, x: torch.Tensor, k: int = 1000, seed: int = 0,
                             binarized: bool = False, **kwargs) -> dict[str, float | int | str]:
    """Mean -L_k over images, with its name and standard error.

    With continuous pixels the Bernoulli "likelihood" of a grey value is not normalized, so
    -L_k is an *importance-sampled BCE bound*, not a negative log-likelihood; only on binarized
    images (``binarized=True``) is it an upper bound on the NLL, comparable to the literature.
    """
    g = torch.Generator(device=_device_of(model)).manual_seed(seed)
    per = importance_bound_per_image(model, x, k, g, **kwargs).double()
    n = len(per)
    sem = float(per.std() / math.sqrt(n)) if n > 1 else float("nan")
    return {"value": float(per.mean()), "sem": sem, "k": k, "images": n,
            "name": (f"NLL upper bound -L_{k} (binarized)" if binarized
                     else f"importance-sampled BCE bound -L_{k}")}


@torch.no_grad()
def latent_dimensions(model: VAE, x: torch.Tensor, threshold: float = 0.01,
                      batch_size: int = EVAL_BATCH) -> pd.DataFrame:
    """Per latent dimension: Cov_x E_q[z_u] (variance of μ_u over images), mean KL, active flag.

    A unit is active (Burda et al. 2015) when the variance of its posterior mean across images
    exceeds ``threshold``: the encoder uses it to tell images apart.
    """
    mu, logvar = encode(model, _flat(x), batch_size)
    mu, logvar = mu.double(), logvar.double()
    var = mu.var(dim=0, unbiased=False) if len(mu) > 1 else torch.zeros(mu.shape[1])
    kl = kl_divergence(mu, logvar).mean(dim=0)
    return pd.DataFrame({
        "dim": np.arange(1, mu.shape[1] + 1, dtype=np.int64),
        "mu_variance": var.numpy(), "kl": kl.numpy(),
        "active": (var > threshold).numpy(),
    })


def active_units(model: VAE, x: torch.Tensor, threshold: float = 0.01) -> int:
    """Number of latent units with Cov_x E_q[z_u] > ``threshold``."""
    return int(latent_dimensions(model, x, threshold)["active"].sum())


# ----------------------------------------------------------------------------- latent probes
def _standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m, s = train.mean(0), train.std(0).clamp_min(1e-8)
    return (train - m) / s, (test - m) / s


@torch.no_grad()
def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 5, chunk: int = 1024) -> float:
    """k-nearest-neighbour (Euclidean, majority vote) accuracy; ties go to the nearer class.

    Features are used as given (no scaling): the probe asks whether the geometry of the
    representation itself puts same-digit images together.
    """
    tx, ty = torch.as_tensor(train_x).double(), torch.as_tensor(train_y).long()
    qx, qy = torch.as_tensor(test_x).double(), torch.as_tensor(test_y).long()
    k = min(k, len(tx))
    n_cls = int(max(ty.max(), qy.max())) + 1
    # rank bonus < 1 vote: among tied classes the one holding the nearest neighbour wins
    bonus = 1e-3 * torch.arange(k, 0, -1, dtype=torch.double)
    sq = tx.pow(2).sum(1)
    correct = 0
    for q, y in zip(qx.split(chunk), qy.split(chunk), strict=True):
        d = sq[None, :] - 2 * q @ tx.T  # + |q|², constant per row
        idx = d.topk(k, dim=1, largest=False).indices
        votes = torch.zeros(len(q), n_cls, dtype=torch.double)
        votes.scatter_add_(1, ty[idx], 1.0 + bonus.expand(len(q), k))
        correct += int((votes.argmax(1) == y).sum())
    return correct / max(len(qx), 1)


@contextlib.contextmanager
def _one_thread():
    """L-BFGS runs hundreds of tiny ops; extra threads only add synchronisation (50x slower
    on a busy 2-core machine), so run them on one thread and restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def logistic_accuracy(train_x, train_y, test_x, test_y, weight_decay: float = 1e-4,
                      max_iter: int = 200) -> float:
    """Multinomial logistic regression (standardized features, L2, L-BFGS): test accuracy.

    Deterministic: zero initialisation and full-batch L-BFGS.
    """
    tx, qx = _standardize(torch.as_tensor(train_x).double(), torch.as_tensor(test_x).double())
    ty, qy = torch.as_tensor(train_y).long(), torch.as_tensor(test_y).long()
    n_cls = int(max(ty.max(), qy.max())) + 1
    w = torch.zeros(tx.shape[1], n_cls, dtype=torch.double, requires_grad=True)
    b = torch.zeros(n_cls, dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(tx @ w + b, ty) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), _one_thread():
        opt.step(closure)
    with torch.no_grad():
        return float(((qx @ w + b).argmax(1) == qy).double().mean())


class PCA:
    """Principal components of a training set (eigenvectors of its covariance), for baselines."""

    def __init__(self, x: torch.Tensor) -> None:
        x = _flat(x).double()
        self.mean = x.mean(0)
        c = x - self.mean
        evals, evecs = torch.linalg.eigh(c.T @ c / max(len(x) - 1, 1))
        order = evals.argsort(descending=True)
        self.components = evecs[:, order].T  # rows: components, largest variance first
        self.variance = evals[order]

    def transform(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        return (_flat(x).double() - self.mean) @ self.components[:dim].T


def latent_probe(model: VAE, train_x, train_y, test_x, test_y, k: int = 5,
                 pca: PCA | None = None, with_pca: bool = True) -> pd.DataFrame:
    """kNN and logistic-regression accuracy of μ(x), fit on train and scored on test, beside a
    PCA baseline of the same dimension (fit on the training images).

    A VAE whose latent code carries digit identity better than the best linear projection of
    the same size should beat PCA here.
    """
    dim = model.latent_dim
    feats = {"vae_mu": (encode(model, _flat(train_x))[0], encode(model, _flat(test_x))[0])}
    if with_pca:
        pca = pca or PCA(train_x)
        feats["pca"] = (pca.transform(train_x, dim), pca.transform(test_x, dim))
    rows = []
    for name, (ftr, fte) in feats.items():
        rows.append({"features": name, "dim": dim,
                     "knn_accuracy": knn_accuracy(ftr, train_y, fte, test_y, k=k),
                     "logreg_accuracy": logistic_accuracy(ftr, train_y, fte, test_y)})
    df = pd.DataFrame(rows)
    df["features"] = df["features"].astype("string")
    return df


# ----------------------------------------------------------------------------- latent paths
@torch.no_grad()
def interpolate(model: VAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the straight line between μ(x_a) and μ(x_b): returns (z [steps, k], images)."""
    if steps < 2:
        raise ValueError("steps must be >= 2")
    device = _device_of(model)
    mu = model.encode(torch.stack([_flat(x_a[None])[0], _flat(x_b[None])[0]]).to(device))[0]
    t = torch.linspace(0, 1, steps, device=device)[:, None]
    z = (1 - t) * mu[0] + t * mu[1]
    return z.cpu(), model.decode(z).cpu()


def interpolation_table(z: torch.Tensor, images: torch.Tensor) -> pd.DataFrame:
    """One row per step: step, t, z1..zk, pixel_0..pixel_783 (KNIME-safe dtypes)."""
    from vae_core.outputs.tables import PIXEL_COLUMNS, z_columns

    n = len(z)
    head = pd.DataFrame({"step": np.arange(n, dtype=np.int64),
                         "t": np.linspace(0.0, 1.0, n)})
    zdf = pd.DataFrame(z.double().numpy(), columns=z_columns(z.shape[1]))
    px = pd.DataFrame(images.reshape(n, -1).double().numpy(), columns=PIXEL_COLUMNS)
    return pd.concat([head, zdf, px], axis=1)


@torch.no_grad()
def interpolation_roughness(model: VAE, x: torch.Tensor, n_pairs: int = 200, steps: int = 16,
                            seed: int = 0) -> dict[str, float]:
    """How evenly the decoded image changes along straight latent paths (smoothness proxy).

    For ``n_pairs`` random pairs of images, decode ``steps`` points between their latent means
    and measure the pixel distance of each step. Roughness = largest step / mean step, averaged
    over pairs: 1 means the image morphs at a constant pace, large values mean the path jumps
    abruptly from one digit to another. Scale-free, so models with different β compare.
    """
    x = _flat(x)
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(len(x), (n_pairs,), generator=g)
    b = torch.randint(len(x), (n_pairs,), generator=g)
    device = _device_of(model)
    mu = encode(model, x[torch.cat([a, b])])[0].to(device)
    ma, mb = mu[:n_pairs], mu[n_pairs:]
    t = torch.linspace(0, 1, steps, device=device)[:, None, None]
    imgs = model.decode((1 - t) * ma + t * mb).double()  # [steps, pairs, 784]
    d = (imgs[1:] - imgs[:-1]).norm(dim=-1)  # [steps-1, pairs]
    keep = d.mean(0) > 1e-9  # a path whose image never changes carries no information
    if not bool(keep.any()):
        return {"roughness": float("nan"), "pairs": 0}
    d = d[:, keep]
    return {"roughness": float((d.max(0).values / d.mean(0)).mean()), "pairs": int(keep.sum())}


@torch.no_grad()
def decoder_gain(model: VAE, x: torch.Tensor, eps: float = 0.05, n: int = 1000,
                 seed: int = 0) -> float:
    """Finite-difference Lipschitz estimate of the decoder around the data's latent means:
    mean ‖f(μ + εu) − f(μ)‖ / ε over random unit directions u (pixel units per prior σ)."""
    x = _flat(x)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n]
    device = _device_of(model)
    mu = encode(model, x[idx])[0].to(device)
    u = torch.randn(mu.shape, generator=g).to(device)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    diff = model.decode(mu + eps * u).double() - model.decode(mu).double()
    return float(diff.norm(dim=1).mean() / eps)
