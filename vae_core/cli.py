"""Command line: ``vae-mnist fetch-data | train | run``.

Settings come from defaults, then ``--config FILE`` (JSON or TOML), then flags. User errors
print one message and exit with status 2; Ctrl-C exits with 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import DEVICES, EVAL_SETS, TrainConfig, load_config_file
from .errors import VAEError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# flag name -> TrainConfig field, type, help
_HYPER = [
    ("--latent-dim", "latent_dim", int, "size of the latent space (default 2)"),
    ("--hidden-dim", "hidden_dim", int, "width of the hidden layer (default 256)"),
    ("--beta", "beta", float, "weight of the KL term (default 1.0)"),
    ("--epochs", "epochs", int, "training epochs (default 30)"),
    ("--batch-size", "batch_size", int, "mini-batch size (default 128)"),
    ("--lr", "learning_rate", float, "Adam learning rate (default 1e-3)"),
    ("--seed", "seed", int, "random seed for split, initialisation and sampling (default 0)"),
    ("--train-fraction", "train_fraction", float,
     "share of the 60k training file used for training in the holdout protocol (default 0.8)"),
    ("--train-limit", "train_limit", int, "use only the first N training images"),
    ("--eval-limit", "eval_limit", int, "use only the first N evaluation images"),
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-mnist", description="Train and inspect a VAE on MNIST.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_opts = argparse.ArgumentParser(add_help=False)
    data_opts.add_argument("--data-dir", help="folder with the four MNIST IDX files (.gz or not); "
                           "default $VAE_MNIST_DIR, else the cache (fetched if missing)")
    data_opts.add_argument("--quiet", "-q", action="store_true", help="no progress output")

    f = sub.add_parser("fetch-data", parents=[data_opts], help="get and verify MNIST")
    f.add_argument("--force", action="store_true",
                   help="replace a damaged cached copy with a freshly fetched, verified one")

    train_opts = argparse.ArgumentParser(add_help=False)
    train_opts.add_argument("--config", help="JSON or TOML file of settings (flags override it)")
    for flag, dest, typ, help_ in _HYPER:
        train_opts.add_argument(flag, dest=dest, type=typ, default=None, help=help_)
    train_opts.add_argument("--eval-set", choices=EVAL_SETS, default=None,
                            help="holdout: 20%% of the training file (the lab, default); "
                                 "test: the official 10k test set")
    train_opts.add_argument("--device", choices=DEVICES, default=None, help="default auto")
    train_opts.add_argument("--resume", action="store_true",
                            help="continue the run in --run-dir from its last checkpoint")
    train_opts.add_argument("--overwrite", action="store_true",
                            help="start again in a --run-dir that already holds a run")
    train_opts.add_argument("--format", choices=("csv", "parquet"), default="csv",
                            help="file format of the tables (default csv)")

    t = sub.add_parser("train", parents=[data_opts, train_opts],
                       help="train only: checkpoint, loss table and loss curve")
    t.add_argument("--run-dir", default="runs/train", help="output folder (default runs/train)")
    r = sub.add_parser("run", parents=[data_opts, train_opts],
                       help="the whole lab job: train, then every table and figure")
    r.add_argument("--run-dir", default="runs/lab", help="output folder (default runs/lab)")
    return p


def _config(args: argparse.Namespace) -> TrainConfig:
    values = load_config_file(args.config) if args.config else {}
    if args.config:
        TrainConfig.from_dict(values, source=f"config file {args.config}")  # names checked early
    for _, dest, _, _ in _HYPER:
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    for dest in ("eval_set", "device"):
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    return TrainConfig.from_dict(values)


def _log(quiet: bool):
    return (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr))


def _cmd_fetch(args: argparse.Namespace) -> None:
    from .data import prepare_mnist

    root = prepare_mnist(args.data_dir, force=args.force, log=_log(args.quiet))
    print(f"MNIST verified (SHA-256) in {root / 'MNIST' / 'raw'}")


def _cmd_train(args: argparse.Namespace, with_results: bool) -> None:
    from .pipeline import run_training

    config = _config(args)
    out = run_training(config, args.run_dir, data_dir=args.data_dir, resume=args.resume,
                       overwrite=args.overwrite, progress=not args.quiet,
                       with_results=with_results, table_format=args.format, log=_log(args.quiet))
    s = out.summary
    print(f"Trained z={s['latent_dim']} β={s['beta']:g} for {s['epochs']} epochs on "
          f"{s['train_images']} images ({s['device']}, {s['train_seconds']:.1f} s).")
    print(f"Held-out ({s['eval_set']}, {s['eval_images']} images): loss {s['final_test_loss']:.2f}"
          f" = recon {s['final_test_recon']:.2f} + β·KL (KL {s['final_test_kl']:.2f}) "
          "nats/image")
    print(f"Run folder: {out.run_dir.resolve()}")
    print(f"  checkpoint  {out.run_dir / s['checkpoint']}")
    for kind in ("tables", "figures"):
        for name, path in s[kind].items():
            print(f"  {name:<16}{out.run_dir / path}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch-data":
            _cmd_fetch(args)
        else:
            _cmd_train(args, with_results=args.command == "run")
    except VAEError as exc:
        print(f"vae-mnist: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        run_dir = Path(getattr(args, "run_dir", ".") or ".")
        hint = ""
        if (run_dir / "checkpoint.pt").exists():
            hint = (f" The last finished epoch is saved in {run_dir / 'checkpoint.pt'}; continue "
                    f"with: vae-mnist {args.command} --run-dir {run_dir} --resume "
                    "(and the same settings).")
        print(f"vae-mnist: interrupted.{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
