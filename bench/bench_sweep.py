"""Cost of the default sweep grid: one autograd run per configuration (what vae_core does)
against the models of a latent size batched into one step (torch.func.vmap, and the old
hand-written batched step).

Trains latent {2,5,10,20} x beta {0.5,1,2,4} for N epochs each way in one process on the lab's
48k/12k split and prints the wall times, the ratios, and the largest difference in held-out
loss against the single runs (quality must be the same).

    python bench/bench_sweep.py --epochs 2 --markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from alt_training import train_handwritten, train_vmap

from vae_core.config import TrainConfig
from vae_core.data.splits import load_mnist
from vae_core.training.loop import train

LATENTS = (2, 5, 10, 20)
BETAS = (0.5, 1.0, 2.0, 4.0)


def compare(data, base: TrainConfig, latents=LATENTS, betas=BETAS) -> dict:
    """Train the grid three ways on ``data``; wall times, speed-ups, quality differences."""
    t0 = time.perf_counter()
    single = {(z, b): train(base.replace(latent_dim=z, beta=b), data, progress=False)
              .history[-1]["test_loss"] for z in latents for b in betas}
    t_single = time.perf_counter() - t0
    out = {"epochs": base.epochs, "configs": len(single), "single_runs_s": t_single}
    for name, fn in (("vmap", train_vmap), ("handwritten", train_handwritten)):
        t0 = time.perf_counter()
        grouped = {}
        for z in latents:
            results = fn([base.replace(latent_dim=z, beta=b) for b in betas], data)
            grouped.update({(z, b): r["history"][-1]["test_loss"]
                            for b, r in zip(betas, results, strict=True)})
        seconds = time.perf_counter() - t0
        out[f"{name}_s"] = seconds
        out[f"{name}_speedup"] = t_single / seconds
        out[f"{name}_max_test_loss_difference"] = max(abs(single[k] - grouped[k])
                                                      for k in single)
    return out


def markdown_rows(res: dict) -> str:
    n, e = res["configs"], res["epochs"]
    return (f"| {n} configurations × {e} epochs, one autograd run after another (vae_core) | "
            f"{res['single_runs_s']:.1f} s |\n"
            f"| the same, the 4 β of each latent size in one `torch.func.vmap` step | "
            f"{res['vmap_s']:.1f} s ({res['vmap_speedup']:.2f}× the single runs; largest "
            f"held-out difference {res['vmap_max_test_loss_difference']:.4f} nats) |\n"
            f"| the same, the old hand-written batched step | "
            f"{res['handwritten_s']:.1f} s ({res['handwritten_speedup']:.2f}× the single runs; "
            f"largest held-out difference {res['handwritten_max_test_loss_difference']:.4f} "
            "nats) |\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit", type=int, help="use only N train and N held-out images (smoke test)")
    p.add_argument("--markdown")
    args = p.parse_args()
    base = TrainConfig(epochs=args.epochs, device="cpu", train_limit=args.limit,
                       eval_limit=args.limit)
    res = compare(load_mnist(base), base)
    res.update(torch=torch.__version__, threads=torch.get_num_threads())
    print(json.dumps(res, indent=2))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as fh:
            fh.write(f"\n### Sweep cost, {time.strftime('%Y-%m-%d %H:%M')} — `{' '.join(sys.argv)}`\n\n"
                     "| measure | value |\n|---|---|\n" + markdown_rows(res))


if __name__ == "__main__":
    main()
