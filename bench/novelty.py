"""Leave-one-digit-out novelty detection with the Score node's scores, against PCA.

For each seed and digit d: train the lab's recipe on the training digits other than d, score
MNIST's test set, report AUROC / AUPRC of "is digit d" for neg-ELBO, L_k and PCA reconstruction
error, and the calibration of the unusual threshold (vae_core/experiments/novelty.py). Each
finished (seed, digit) is kept in --out, so rerunning continues where it stopped.

    python bench/novelty.py --out runs/novelty --results docs/results     # the real figures
    python bench/novelty.py --out /tmp/n --epochs 1 --train-limit 2000 --eval-limit 1000 \
        --digits 0 1 --seeds 0 --iw-k 5                                   # a smoke test
"""

from __future__ import annotations

import argparse
import sys

from vae_core.config import SETTINGS, TrainConfig
from vae_core.errors import VAEError
from vae_core.experiments.novelty import (
    DEFAULT_EPOCHS,
    DEFAULT_IW_K,
    DEFAULT_SEEDS,
    publish,
    run_novelty,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/novelty", help="benchmark folder (default runs/novelty)")
    p.add_argument("--results", help="also copy the tables and pages here (docs/results)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    p.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--iw-k", type=int, default=DEFAULT_IW_K)
    for name in ("latent_dim", "train_limit", "eval_limit", "device", "data_dir"):
        flag = "--" + name.replace("_", "-")
        kind = next((s.type for s in SETTINGS if s.name == name), str)
        p.add_argument(flag, dest=name, type=kind, default=None)
    args = p.parse_args(argv)
    given = {k: getattr(args, k) for k in ("latent_dim", "train_limit", "eval_limit", "device")
             if getattr(args, k) is not None}
    try:
        base = TrainConfig(epochs=args.epochs, **given)
        run_novelty(args.out, base, digits=args.digits, seeds=args.seeds, iw_k=args.iw_k,
                    data_dir=args.data_dir, log=lambda m: print(m, file=sys.stderr))
        if args.results:
            publish(args.out, args.results)
    except VAEError as exc:
        print(f"novelty: error: {exc}", file=sys.stderr)
        return 2
    print(open(f"{args.out}/novelty.md", encoding="utf-8").read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
