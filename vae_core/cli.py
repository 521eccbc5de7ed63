"""Command line: ``vae-mnist fetch-data | train | run | evaluate | sweep | report``.

Settings come from defaults, then ``--config FILE`` (JSON or TOML), then flags. User errors
print one message and exit with status 2; Ctrl-C exits with 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import DEVICES, EVAL_SETS, LR_SCHEDULES, TrainConfig, load_config_file
from .errors import ConfigError, VAEError

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

    hyper_opts = argparse.ArgumentParser(add_help=False)
    hyper_opts.add_argument("--config", help="JSON or TOML file of settings (flags override it)")
    for flag, dest, typ, help_ in _HYPER:
        hyper_opts.add_argument(flag, dest=dest, type=typ, default=None, help=help_)
    hyper_opts.add_argument("--eval-set", choices=EVAL_SETS, default=None,
                            help="holdout: 20%% of the training file (the lab, default); "
                                 "test: the official 10k test set")
    hyper_opts.add_argument("--lr-schedule", dest="lr_schedule", choices=LR_SCHEDULES,
                            default=None, help="constant: the lab (default); cosine: decay "
                            "from --lr to 0 over the run")
    hyper_opts.add_argument("--device", choices=DEVICES, default=None, help="default auto")
    hyper_opts.add_argument("--binarize", action="store_true", default=None,
                            help="binarized MNIST: Bernoulli-resample each training batch, "
                                 "evaluate on a fixed binarized held-out set")
    train_opts = argparse.ArgumentParser(add_help=False, parents=[hyper_opts])
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

    iw_opts = argparse.ArgumentParser(add_help=False)
    iw_opts.add_argument("--iw-k", type=int, default=None,
                         help="importance samples k of the bound L_k (default 1000)")
    iw_opts.add_argument("--iw-images", type=int, default=None,
                         help="held-out images the bound L_k is computed on (default 1000)")

    e = sub.add_parser("evaluate", parents=[data_opts, iw_opts],
                       help="metrics of a trained run folder (neg-ELBO, L_k, active units, "
                            "latent probes, interpolation)")
    e.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by `vae-mnist run`")

    s = sub.add_parser("sweep", parents=[data_opts, hyper_opts, iw_opts],
                       help="train and evaluate a grid of latent sizes × β; judge the lab's "
                            "claims (rerun to resume)")
    s.add_argument("--latent-dims", type=int, nargs="+", default=None, metavar="Z",
                   help="latent sizes of the grid (default 2 5 10 20)")
    s.add_argument("--betas", type=float, nargs="+", default=None, metavar="B",
                   help="β values of the grid (default 0.5 1 2 4)")
    s.add_argument("--out", default="runs/sweep", help="sweep folder (default runs/sweep)")

    rp = sub.add_parser("repeat", parents=[data_opts, hyper_opts],
                        help="one recipe over several seeds: spread of the held-out neg-ELBO "
                             "(rerun to resume)")
    rp.add_argument("--latent-dims", type=int, nargs="+", default=None, metavar="Z",
                    help="latent sizes (default 2 20)")
    rp.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                    help="seeds (default 0 1 2)")
    rp.add_argument("--out", default="runs/repeat", help="output folder (default runs/repeat)")

    rep = sub.add_parser("report", parents=[data_opts, iw_opts],
                         help="one self-contained HTML report of a run or sweep folder")
    rep.add_argument("folder", metavar="RUN_OR_SWEEP_DIR")
    rep.add_argument("--output", "-o", default=None,
                     help="HTML file to write (default FOLDER/report.html)")
    rep.add_argument("--no-evaluate", action="store_true",
                     help="for a run folder without metrics: leave the metrics out instead of "
                          "computing them (computing needs MNIST)")
    return p


def _config(args: argparse.Namespace) -> TrainConfig:
    values = load_config_file(args.config) if args.config else {}
    if args.config:
        TrainConfig.from_dict(values, source=f"config file {args.config}")  # names checked early
    for _, dest, _, _ in _HYPER:
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    for dest in ("eval_set", "lr_schedule", "device", "binarize"):
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


def _iw(args: argparse.Namespace) -> dict:
    from .sweep import DEFAULT_IW_IMAGES, DEFAULT_IW_K

    k = DEFAULT_IW_K if args.iw_k is None else args.iw_k
    n = DEFAULT_IW_IMAGES if args.iw_images is None else args.iw_images
    if k < 1 or n < 1:
        raise ConfigError("--iw-k and --iw-images must be integers >= 1.")
    return {"iw_k": k, "iw_images": n}


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from .sweep import evaluate_run_dir

    m = evaluate_run_dir(args.run_dir, data_dir=args.data_dir, log=_log(args.quiet), **_iw(args))
    print(f"Held-out neg-ELBO (β = 1) {m['neg_elbo']:.2f} = recon {m['recon']:.2f} + KL "
          f"{m['kl']:.2f} nats/image; {m['iw_name']} {m['iw_bound']:.2f} on {m['iw_images']} "
          f"images; active units {m['active_units']}/{m['latent_dim']}; kNN {m['knn_vae']:.3f} "
          f"(PCA {m['knn_pca']:.3f}); logistic {m['logreg_vae']:.3f} (PCA {m['logreg_pca']:.3f})")
    print(f"Written to {Path(args.run_dir) / 'metrics.json'} and its tables/ and figures/.")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from .sweep import DEFAULT_BETAS, DEFAULT_LATENTS, run_sweep

    if args.latent_dim is not None or args.beta is not None:
        raise ConfigError("A sweep sets latent size and β from its grid: use --latent-dims and "
                          "--betas instead of --latent-dim / --beta.")
    base = _config(args)
    res = run_sweep(args.out, base, latent_dims=args.latent_dims or DEFAULT_LATENTS,
                    betas=args.betas or DEFAULT_BETAS, data_dir=args.data_dir,
                    progress=not args.quiet, log=_log(args.quiet), **_iw(args))
    print(f"Sweep of {len(res.experiments)} configurations in {res.out_dir.resolve()} "
          f"({len(res.trained)} trained now, {len(res.reused)} finished earlier).")
    for c in res.claims.get("claims", []):
        print(f"  {c['verdict']:<17} {c['claim']}")
    for t in res.claims.get("targets", []):
        print(f"  {'met' if t['met'] else 'NOT met':<17} {t['target']}")
    print(f"Table: {res.out_dir / 'experiments.csv'}; claims: {res.out_dir / 'claims.md'}")


def _cmd_repeat(args: argparse.Namespace) -> None:
    from .repeat import SUMMARY_FILE, run_repeats

    if args.latent_dim is not None or args.seed is not None:
        raise ConfigError("repeat takes its latent sizes and seeds from --latent-dims and "
                          "--seeds, not --latent-dim / --seed.")
    summary = run_repeats(args.out, _config(args), args.latent_dims or (2, 20),
                          args.seeds or (0, 1, 2), data_dir=args.data_dir, log=_log(args.quiet))
    for r in summary.itertuples():
        print(f"z={r.latent_dim}: held-out neg-ELBO {r.mean:.2f} ± {r.sd:.2f} (sd over "
              f"{r.runs} seeds; min {r.min:.2f}, max {r.max:.2f})")
    print(f"Tables: {Path(args.out) / 'repeats.csv'}, {Path(args.out) / SUMMARY_FILE}")


def _cmd_report(args: argparse.Namespace) -> None:
    from .report import write_report

    path = write_report(args.folder, args.output, data_dir=args.data_dir,
                        evaluate_missing=not args.no_evaluate, log=_log(args.quiet),
                        **_iw(args))
    print(f"Report written: {Path(path).resolve()}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "fetch-data":
            _cmd_fetch(args)
        elif args.command == "evaluate":
            _cmd_evaluate(args)
        elif args.command == "sweep":
            _cmd_sweep(args)
        elif args.command == "report":
            _cmd_report(args)
        elif args.command == "repeat":
            _cmd_repeat(args)
        else:
            _cmd_train(args, with_results=args.command == "run")
    except VAEError as exc:
        print(f"vae-mnist: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if args.command in ("sweep", "repeat"):
            print(f"vae-mnist: interrupted. Finished configurations are kept in {args.out}; run "
                  "the same command again to continue where it stopped.", file=sys.stderr)
            return EXIT_INTERRUPTED
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
