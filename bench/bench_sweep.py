"""Cost of the default sweep grid: grouped training (train_many) against one run per config.

Trains latent {2,5,10,20} x beta {0.5,1,2,4} for N epochs both ways in one process on the lab's
48k/12k split and prints the wall times, the ratio, and the largest difference in held-out
loss between the two ways (quality must be the same).

    python bench/bench_sweep.py --epochs 2 --markdown BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from vae_core.config import TrainConfig
from vae_core.data import load_mnist
from vae_core.train import train, train_many

LATENTS = (2, 5, 10, 20)
BETAS = (0.5, 1.0, 2.0, 4.0)


def compare(data, base: TrainConfig) -> dict:
    """Train the grid both ways on ``data``; wall times, speed-up and the quality difference."""
    t0 = time.perf_counter()
    single = {(z, b): train(base.replace(latent_dim=z, beta=b), data, progress=False)
              for z in LATENTS for b in BETAS}
    t_single = time.perf_counter() - t0

    t0 = time.perf_counter()
    grouped = {}
    for z in LATENTS:
        results = train_many([base.replace(latent_dim=z, beta=b) for b in BETAS], data,
                             progress=False)
        grouped.update({(z, b): r for b, r in zip(BETAS, results, strict=True)})
    t_group = time.perf_counter() - t0

    diff = max(abs(single[k].history[-1]["test_loss"] - grouped[k].history[-1]["test_loss"])
               for k in single)
    return {"epochs": base.epochs, "configs": len(single), "single_runs_s": t_single,
            "grouped_s": t_group, "speedup": t_single / t_group,
            "max_test_loss_difference": diff}


def markdown_rows(res: dict) -> str:
    return (f"| 16 configurations × {res['epochs']} epochs, single runs one after another | "
            f"{res['single_runs_s']:.1f} s |\n"
            f"| the same, grouped (4 × `train_many`, the 4 β of a latent size) | "
            f"{res['grouped_s']:.1f} s |\n"
            f"| sweep speed-up (target > 1) | {res['speedup']:.2f}× |\n"
            f"| largest difference in final held-out loss, single vs grouped | "
            f"{res['max_test_loss_difference']:.4f} nats |\n")


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
