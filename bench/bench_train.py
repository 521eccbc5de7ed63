"""Speed, memory and quality of vae_core training against the lab's loop and the GEMM floor.

One command, one process, same machine and data:
  (a) the lab's loop as the seed wrote it: torchvision MNIST + ToTensor + DataLoader(128, shuffle)
      + the seed's loss on vae_core's VAE (the seed's layers), Adam 1e-3, a test pass each epoch;
  (b) vae_core.training.loop with the same hyperparameters: autograd (`loss.backward()` through
      VAE.forward and vae_loss), data in memory, fused Adam;
  (b') the same loop with the hand-written gradients vae_core used before (bench/alt_training.py);
  (c) the arithmetic floor: only the five 128x784x256 matrix products of each step.
(b) and (b') alternate epoch by epoch in fresh runs so drift in the machine's speed hits both.
Prints s/epoch, the ratios a/b, b'/b and b/c, peak RSS, held-out neg-ELBO of (a) and (b), evaluation
timings and the wall time of `vae-mnist run`; `--markdown FILE` appends a results section.

    python bench/bench_train.py --epochs 30 --markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from vae_core.config import TrainConfig
from vae_core.data.sources import prepare_mnist
from vae_core.data.splits import load_mnist
from vae_core.evaluation import estimators
from vae_core.model.network import VAE
from vae_core.training.loop import train


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- (a) the lab
# The seed's Encoder/Decoder have exactly vae_core's layers, built in the same order, so (a) uses
# vae_core's VAE (same initial weights under the same seed). What stays the seed's is the loop:
# torchvision's DataLoader, the decoder's sigmoid output and BCE on probabilities (lab_loss),
# not vae_core's BCE-with-logits, and the global random state for init and noise.
def lab_loss(recon_x, x, mu, logvar, beta=1.0):
    recon = nn.functional.binary_cross_entropy(recon_x, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon + beta * kl


def run_lab_loop(root: Path, epochs: int, seed: int, limit: int | None = None) -> dict:
    """The seed's training loop (DataLoader path), with a held-out pass after each epoch."""
    from torch.utils.data import DataLoader, Subset, random_split
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    dataset = datasets.MNIST(root=str(root), train=True, download=False,
                             transform=transforms.ToTensor())
    train_size = int(0.8 * len(dataset))
    train_ds, test_ds = random_split(dataset, [train_size, len(dataset) - train_size],
                                     generator=torch.Generator().manual_seed(seed))
    if limit:  # smoke runs: the first images of each side, as --train-limit does
        train_ds = Subset(train_ds, range(min(limit, len(train_ds))))
        test_ds = Subset(test_ds, range(min(limit, len(test_ds))))
    train_loader = DataLoader(train_ds, batch_size=128, shuffle=True)
    test_loader = DataLoader(test_ds, batch_size=128, shuffle=False)
    model = VAE.from_config(TrainConfig(latent_dim=2, hidden_dim=256))
    enc, dec = model.encoder, model.decode  # decode: the sigmoid of the logits, as the seed's
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times, test_loss = [], float("nan")
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, _ in train_loader:
            x = x.view(-1, 784)
            mu, logvar = enc(x)
            z = mu + torch.randn_like(logvar) * torch.exp(0.5 * logvar)
            loss = lab_loss(dec(z), x, mu, logvar)
            opt.zero_grad()
            loss.backward()
            opt.step()
        total = 0.0
        with torch.no_grad():
            for x, _ in test_loader:
                x = x.view(-1, 784)
                mu, logvar = enc(x)
                z = mu + torch.randn_like(logvar) * torch.exp(0.5 * logvar)
                total += lab_loss(dec(z), x, mu, logvar).item()
        test_loss = total / len(test_ds)
        times.append(time.perf_counter() - t0)
    return {"s_per_epoch": statistics.median(times), "test_neg_elbo": test_loss}


# ----------------------------------------------------------------------------- (b) vae_core
def run_core(root: Path, epochs: int, seed: int, limit: int | None = None, lk_k: int = 1000,
             device: str = "cpu") -> dict:
    cfg = TrainConfig(epochs=epochs, seed=seed, device=device, train_limit=limit,
                      eval_limit=limit)
    data = load_mnist(cfg, root)
    result = train(cfg, data, progress=False)
    times = [row["seconds"] for row in result.history]
    if device == "cpu":  # (b') in the same process, interleaved with short (b) runs
        out_hw = run_handwritten_vs_autograd(cfg, data)
    else:
        out_hw = {}
    t0 = time.perf_counter()
    estimators.encode(result.model, data.eval.images)
    estimators.reconstruct(result.model, data.eval.images)
    eval_s = time.perf_counter() - t0
    out = {"s_per_epoch": statistics.median(times), "test_neg_elbo": result.history[-1]["test_loss"],
           "encode_reconstruct_12k_s": eval_s, "peak_rss_mb": peak_rss_mb(), **out_hw}
    bound = getattr(estimators, "importance_sampled_bound", None)
    if bound is not None:  # the L_k metric, timed when present
        t0 = time.perf_counter()
        bound(result.model, data.eval.images[:1000], k=lk_k)
        out["lk_s"] = time.perf_counter() - t0
        out["lk_k"] = lk_k
    return out


def run_handwritten_vs_autograd(cfg: TrainConfig, data, rounds: int = 3) -> dict:
    """(b') against (b): ``rounds`` pairs of 2-epoch runs, alternating, median s/epoch each."""
    from alt_training import train_handwritten

    short = cfg.replace(epochs=min(2, cfg.epochs))
    hw, ag = [], []
    for _ in range(rounds):
        hw += [r["seconds"] for r in train_handwritten([short], data)[0]["history"]]
        ag += [r["seconds"] for r in train(short, data, progress=False).history]
    hw_s, ag_s = statistics.median(hw), statistics.median(ag)
    return {"autograd_s_per_epoch_paired": ag_s, "handwritten_s_per_epoch": hw_s,
            "autograd_over_handwritten": ag_s / hw_s}


# ----------------------------------------------------------------------------- (c) the floor
def run_gemm_floor() -> dict:
    """(c): only the five big products per step, an epoch's worth, in fp32 on the CPU."""
    from bench_precision import gemm_floor

    return {"s_per_epoch": gemm_floor(torch.float32, torch.device("cpu"))}


def run_bf16(root: Path, device: str, limit: int | None) -> dict:
    """bf16 in the same run (bench/bench_precision.py measures speed, floors and quality)."""
    from bench_precision import bf16_speed

    cfg = TrainConfig(device=device, train_limit=limit, eval_limit=limit)
    return bf16_speed(cfg, load_mnist(cfg, root), torch.device(device), 3)


def run_cli(root: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "vae_core.cli", "run", "--quiet",
                               "--data-dir", str(root), "--run-dir", f"{tmp}/run"],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    return {"wall_s": wall, "test_neg_elbo": summary["final_test_loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-lab", action="store_true", help="skip the (slow) lab loop")
    p.add_argument("--skip-cli", action="store_true", help="skip timing the whole `vae-mnist run`")
    p.add_argument("--limit", type=int, help="use only N train and N held-out images (smoke test)")
    p.add_argument("--lk-k", type=int, default=1000, help="importance samples for timing L_k")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="device for (b); (a) and (c) always run on the CPU")
    p.add_argument("--sweep-epochs", type=int, default=2,
                   help="epochs per configuration for the sweep-cost comparison (0: skip it)")
    p.add_argument("--markdown", help="append a results section to this file")
    args = p.parse_args()

    root = prepare_mnist()
    res: dict = {"epochs": args.epochs, "threads": torch.get_num_threads(),
                 "cores": os.cpu_count(), "torch": torch.__version__,
                 "cpu": platform.processor() or platform.machine()}
    res["gemm"] = run_gemm_floor()
    res["core"] = run_core(root, args.epochs, args.seed, args.limit, args.lk_k, args.device)
    res["device"] = args.device if args.device == "cpu" else torch.cuda.get_device_name(0)
    if not args.skip_lab:
        res["lab"] = run_lab_loop(root, args.epochs, args.seed, args.limit)
        res["lab_over_core"] = res["lab"]["s_per_epoch"] / res["core"]["s_per_epoch"]
    res["core_over_gemm"] = res["core"]["s_per_epoch"] / res["gemm"]["s_per_epoch"]
    res["bf16"] = run_bf16(root, args.device, args.limit)
    if not args.skip_cli:
        res["cli_run"] = run_cli(root)
    if args.sweep_epochs:
        from bench_sweep import compare

        base = TrainConfig(epochs=args.sweep_epochs, device="cpu", train_limit=args.limit,
                           eval_limit=args.limit)
        res["sweep"] = compare(load_mnist(base, root), base)
    print(json.dumps(res, indent=2))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write(markdown(res, " ".join(sys.argv)))


def markdown(r: dict, command: str) -> str:
    core, gemm = r["core"], r["gemm"]
    lines = [f"\n### Run of {time.strftime('%Y-%m-%d %H:%M')} — `{command}`\n",
             f"Machine: {r['cores']} cores ({r['cpu']}), torch {r['torch']}, "
             f"{r['threads']} threads, {r['epochs']} epochs, z = 2, batch 128, (b) on "
             f"{r['device']}.\n",
             "| measure | value |", "|---|---|",
             f"| (c) GEMM floor | {gemm['s_per_epoch']:.3f} s/epoch |",
             f"| (b) vae_core training, autograd (train + held-out pass) | "
             f"{core['s_per_epoch']:.3f} s/epoch |",
             f"| ratio b/c (target ≤ 1.5) | {r['core_over_gemm']:.2f} |"]
    b16 = r.get("bf16", {})
    if b16.get("native"):
        lines += [f"| bf16 GEMM floor | {b16['floor_s']:.3f} s/epoch |",
                  f"| vae_core training in bf16 (train + held-out pass) | "
                  f"{b16['s_per_epoch']:.3f} s/epoch |",
                  f"| ratio bf16 epoch / fp32 floor (target ≤ 1.0) | "
                  f"{b16['s_per_epoch'] / gemm['s_per_epoch']:.2f} |"]
    elif b16:
        lines.append(f"| bf16: not native here (refused); an epoch's products emulated | "
                     f"{b16['floor_emulated_s']:.1f} s |")
    if "handwritten_s_per_epoch" in core:
        lines += [f"| (b′) hand-written gradients, alternating 2-epoch runs with (b) | "
                  f"{core['handwritten_s_per_epoch']:.3f} s/epoch against (b) "
                  f"{core['autograd_s_per_epoch_paired']:.3f} s/epoch |",
                  f"| ratio b/b′ (keep b′ only if ≥ 1.15) | "
                  f"{core['autograd_over_handwritten']:.2f} |"]
    if "lab" in r:
        lines += [f"| (a) lab loop (DataLoader + ToTensor) | {r['lab']['s_per_epoch']:.3f} s/epoch |",
                  f"| ratio a/b (target ≥ 5) | {r['lab_over_core']:.2f} |",
                  f"| held-out neg-ELBO after {r['epochs']} epochs: lab / vae_core | "
                  f"{r['lab']['test_neg_elbo']:.2f} / {core['test_neg_elbo']:.2f} |"]
    else:
        lines.append(f"| held-out neg-ELBO after {r['epochs']} epochs (vae_core) | "
                     f"{core['test_neg_elbo']:.2f} |")
    lines += [f"| peak RSS after vae_core training (whole process) | {core['peak_rss_mb']:.0f} MB |",
              f"| encode + reconstruct 12k held-out | {core['encode_reconstruct_12k_s']:.2f} s |"]
    if "lk_s" in core:
        lines.append(f"| L_k, k = {core['lk_k']}, 1,000 images | {core['lk_s']:.2f} s |")
    if "sweep" in r:
        from bench_sweep import markdown_rows

        lines.append(markdown_rows(r["sweep"]).rstrip("\n"))
    if "cli_run" in r:
        lines.append(f"| whole `vae-mnist run` (30 epochs + tables + figures), wall | "
                     f"{r['cli_run']['wall_s']:.1f} s (neg-ELBO {r['cli_run']['test_neg_elbo']:.2f}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
