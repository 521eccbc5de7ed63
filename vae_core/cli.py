"""Command line: ``vae-mnist fetch-data | train | run | evaluate | sweep | report``.

Settings come from defaults, then ``--config FILE`` (JSON or TOML), then flags; on ``--resume``
from the checkpoint, and a flag that contradicts it is an error. User errors print one message
and exit with status 2; Ctrl-C exits with 130 and names the command that continues.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from vae_core.config import (
    RESUME_MAY_CHANGE,
    SCORE_SETTINGS,
    SETTINGS,
    ScoreConfig,
    Setting,
    TrainConfig,
    load_config_file,
)
from vae_core.errors import ConfigError, RunDirError, VAEError
from vae_core.training import rundir

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# TrainConfig field -> its flag (every setting has one)
_FLAGS = {s.name: s.flag for s in SETTINGS}
_DEVICES = next(s.choices for s in SETTINGS if s.name == "device")
_RESUME_HELP = (
    "continue the run in --run-dir from its last checkpoint: an interrupted training if there "
    "is one, else the finished run (give a larger --epochs to train it longer). Every setting "
    "is taken from the checkpoint (they are printed); only "
    + " and ".join(_FLAGS[n] for n in RESUME_MAY_CHANGE)
    + " may differ (--epochs not below the epochs already trained, and not under "
    "--lr-schedule cosine). Any other flag or --config value that contradicts the checkpoint "
    "is an error. The folder shows the previous run until the resumed one has finished.")


def add_setting_flags(parser: argparse.ArgumentParser,
                      table: tuple[Setting, ...] = SETTINGS) -> None:
    """One flag per setting of the table. A flag's default is None ("not given"): the
    defaults live in the table, and a config file or a checkpoint fills what is not given."""
    for s in table:
        help_ = s.help.replace("%", "%%")
        if s.type is bool:
            parser.add_argument(s.flag, dest=s.name, action="store_true", default=None,
                                help=help_)
            continue
        if s.default is not None:
            help_ += f" (default {s.default})"
        parser.add_argument(s.flag, dest=s.name, type=s.type, choices=s.choices or None,
                            default=None, help=help_)


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
    add_setting_flags(hyper_opts)
    train_opts = argparse.ArgumentParser(add_help=False, parents=[hyper_opts])
    train_opts.add_argument("--resume", action="store_true", help=_RESUME_HELP)
    train_opts.add_argument("--overwrite", action="store_true",
                            help="start a new run in a --run-dir that already holds one: the old "
                                 "run stays untouched until the new one has finished, then is "
                                 "replaced whole (none of its files is kept)")
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

    im = sub.add_parser("import-model", parents=[data_opts],
                        help="make a run folder from a saved model (KNIME's Save Model node), "
                             "for `evaluate` and `report`")
    im.add_argument("model_file", metavar="MODEL_FILE",
                    help="a model file (.pt) written by the KNIME workflow's Save Model node")
    im.add_argument("--run-dir", required=True, help="the run folder to create")
    im.add_argument("--overwrite", action="store_true", help="replace a run the folder holds")
    im.add_argument("--format", choices=("csv", "parquet"), default="csv",
                    help="table format (default csv)")

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

    sc = sub.add_parser("score", parents=[data_opts],
                        help="how unusual each image is to a model: the Score node's table")
    sc.add_argument("model", metavar="MODEL_OR_RUN", help="a run folder, its checkpoint.pt or "
                    "a model file saved by KNIME's Save Model node")
    sc.add_argument("--table", help="a CSV or Parquet table with pixel_0 ... pixel_783 (default: "
                    "MNIST's 10,000 test images)")
    sc.add_argument("--out", required=True, help="the scored table to write (.csv or .parquet)")
    sc.add_argument("--device", choices=_DEVICES, default="auto", help="default auto")
    add_setting_flags(sc, SCORE_SETTINGS)

    rep = sub.add_parser("report", parents=[data_opts, iw_opts],
                         help="one self-contained HTML report of a run or sweep folder")
    rep.add_argument("folder", metavar="RUN_OR_SWEEP_DIR")
    rep.add_argument("--output", "-o", default=None,
                     help="HTML file to write (default FOLDER/report.html)")
    rep.add_argument("--no-evaluate", action="store_true",
                     help="for a run folder without metrics: leave the metrics out instead of "
                          "computing them (computing needs MNIST)")
    return p


def _given(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The settings the user gave (config file, then flags; defaults left out), and how each
    was given (``"--latent-dim 5"``, ``"beta = 2.0 in config file c.toml"``) for messages."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if args.config:
        from_file = load_config_file(args.config)
        TrainConfig.from_dict(from_file, source=f"config file {args.config}")  # checked early
        for name, value in from_file.items():
            values[name] = value
            sources[name] = f"{name} = {value!r} in config file {args.config}"
    for dest, flag in _FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            values[dest] = value
            sources[dest] = flag if isinstance(value, bool) else f"{flag} {value}"
    TrainConfig.from_dict(values)  # every given value checked before anything runs
    return values, sources


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig.from_dict(_given(args)[0])


def _log(quiet: bool):
    return (lambda _m: None) if quiet else (lambda m: print(m, file=sys.stderr))


def _cmd_fetch(args: argparse.Namespace) -> None:
    from vae_core.data.sources import prepare_mnist

    root = prepare_mnist(args.data_dir, force=args.force, log=_log(args.quiet))
    print(f"MNIST verified (SHA-256) in {root / 'MNIST' / 'raw'}")


def _cmd_train(args: argparse.Namespace, with_results: bool) -> None:
    given, sources = _given(args)  # a bad setting is refused before PyTorch is even imported
    from vae_core.training.jobs import run_training

    out = run_training(given, args.run_dir, sources=sources, data_dir=args.data_dir,
                       resume=args.resume, overwrite=args.overwrite, progress=not args.quiet,
                       with_results=with_results, table_format=args.format, log=_log(args.quiet))
    s = out.summary
    if out.from_checkpoint:
        print("Settings taken from the checkpoint: "
              + ", ".join(f"{k}={v!r}" for k, v in out.from_checkpoint.items()) + ".")
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
    from vae_core.evaluation.run_metrics import DEFAULT_IW_IMAGES, DEFAULT_IW_K

    k = DEFAULT_IW_K if args.iw_k is None else args.iw_k
    n = DEFAULT_IW_IMAGES if args.iw_images is None else args.iw_images
    if k < 1 or n < 1:
        raise ConfigError("--iw-k and --iw-images must be integers >= 1.")
    return {"iw_k": k, "iw_images": n}


def _finished_run_needed(folder: Path) -> None:
    """Finish a swap a crash interrupted; refuse a folder that holds only an unfinished run."""
    if not folder.is_dir():
        return
    rundir.settle(folder)
    unfinished = rundir.unfinished_checkpoint(folder)
    if (unfinished is not None and rundir.finished_checkpoint(folder) is None
            and not (folder / "sweep.json").is_file()):
        finish = shlex.join(["vae-mnist", "run", "--run-dir", str(folder), "--resume"])
        raise RunDirError(f"{folder} holds no finished run yet, only an unfinished training "
                          f"({rundir.describe_checkpoint(unfinished)}, in "
                          f"{folder / rundir.STAGING}). Finish it first with `{finish}`.")


def _cmd_import(args: argparse.Namespace) -> None:
    from vae_core.training.jobs import import_model

    out = import_model(args.model_file, args.run_dir, data_dir=args.data_dir,
                       overwrite=args.overwrite, table_format=args.format, log=_log(args.quiet))
    s = out.summary
    print(f"Imported {args.model_file}: z={s['latent_dim']} β={s['beta']:g}, {s['epochs']} "
          f"epochs, held-out loss {s['final_test_loss']:.2f} nats/image (as trained).")
    print(f"Run folder: {out.run_dir.resolve()}; next: vae-mnist evaluate {out.run_dir} / "
          f"vae-mnist report {out.run_dir}")


def _model_file_given(path: Path, command: str) -> None:
    """A model file where a run folder is expected: say how to make one."""
    if path.is_file():
        folder = path.with_suffix("")
        raise RunDirError(f"{path} is a file; `vae-mnist {command}` takes a run folder. For a "
                          "model saved by KNIME's Save Model node, make one first: "
                          f"`vae-mnist import-model {path} --run-dir {folder}`.")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    _model_file_given(Path(args.run_dir), "evaluate")
    _finished_run_needed(Path(args.run_dir))
    from vae_core.evaluation.run_metrics import evaluate_run_dir

    m = evaluate_run_dir(args.run_dir, data_dir=args.data_dir, log=_log(args.quiet), **_iw(args))
    print(f"Held-out neg-ELBO (β = 1) {m['neg_elbo']:.2f} = recon {m['recon']:.2f} + KL "
          f"{m['kl']:.2f} nats/image; {m['iw_name']} {m['iw_bound']:.2f} on {m['iw_images']} "
          f"images; active units {m['active_units']}/{m['latent_dim']}; kNN {m['knn_vae']:.3f} "
          f"(PCA {m['knn_pca']:.3f}); logistic {m['logreg_vae']:.3f} (PCA {m['logreg_pca']:.3f})")
    print(f"Written to {Path(args.run_dir) / 'metrics.json'} and its tables/ and figures/.")


def _cmd_sweep(args: argparse.Namespace) -> None:
    from vae_core.experiments.sweep import DEFAULT_BETAS, DEFAULT_LATENTS, run_sweep

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
    from vae_core.experiments.repeat import SUMMARY_FILE, run_repeats

    if args.latent_dim is not None or args.seed is not None:
        raise ConfigError("repeat takes its latent sizes and seeds from --latent-dims and "
                          "--seeds, not --latent-dim / --seed.")
    summary = run_repeats(args.out, _config(args), args.latent_dims or (2, 20),
                          args.seeds or (0, 1, 2), data_dir=args.data_dir, log=_log(args.quiet))
    for r in summary.itertuples():
        print(f"z={r.latent_dim}: held-out neg-ELBO {r.mean:.2f} ± {r.sd:.2f} (sd over "
              f"{r.runs} seeds; min {r.min:.2f}, max {r.max:.2f})")
    print(f"Tables: {Path(args.out) / 'repeats.csv'}, {Path(args.out) / SUMMARY_FILE}")


def _cmd_score(args: argparse.Namespace) -> None:
    settings = ScoreConfig.from_dict({s.name: getattr(args, s.name) for s in SCORE_SETTINGS
                                      if getattr(args, s.name) is not None})
    from vae_core.evaluation.scores import score_command

    print(score_command(args.model, args.out, settings, table=args.table, data_dir=args.data_dir,
                        device=args.device, log=_log(args.quiet)))


def _cmd_report(args: argparse.Namespace) -> None:
    from vae_core.outputs.report import write_report

    _model_file_given(Path(args.folder), "report")
    _finished_run_needed(Path(args.folder))
    path = write_report(args.folder, args.output, data_dir=args.data_dir,
                        evaluate_missing=not args.no_evaluate, log=_log(args.quiet),
                        **_iw(args))
    print(f"Report written: {Path(path).resolve()}")


def _interrupted(args: argparse.Namespace, argv: list[str], before) -> str:
    """What Ctrl-C leaves behind, and the command that goes on (only real flags: it is built
    from the parsed arguments, or is the command line as typed)."""
    again = shlex.join(["vae-mnist", *argv])
    if args.command in ("sweep", "repeat"):
        return (f"vae-mnist: interrupted. Finished configurations are kept in {args.out}; to "
                f"continue where it stopped, run `{again}`.")
    if args.command == "import-model":
        return (f"vae-mnist: interrupted; {args.run_dir} is as it was. To import the model, run "
                f"`{again}`.")
    if args.command == "evaluate":
        return (f"vae-mnist: interrupted before the evaluation finished (metrics.json is written "
                f"last). To evaluate {args.run_dir}, run `{again}`.")
    if args.command == "report":
        return f"vae-mnist: interrupted; no report was written. To write it, run `{again}`."
    if args.command == "score":
        return f"vae-mnist: interrupted; nothing was written. To score, run `{again}`."
    if args.command == "fetch-data":
        return f"vae-mnist: interrupted. To fetch and verify MNIST, run `{again}`."
    run_dir = Path(args.run_dir)
    ckpt = rundir.unfinished_checkpoint(run_dir)
    if ckpt is None or rundir.file_identity(ckpt) == before:
        return (f"vae-mnist: interrupted before an epoch finished; {run_dir} is as it was. To "
                f"try again, run `{again}`.")
    resume = ["vae-mnist", args.command, "--run-dir", str(run_dir), "--resume"]
    if args.data_dir:
        resume += ["--data-dir", args.data_dir]
    if args.format != "csv":
        resume += ["--format", args.format]
    kept = (f" Until then {run_dir} keeps showing the previous run."
            if rundir.finished_checkpoint(run_dir) is not None else "")
    return (f"vae-mnist: interrupted. {rundir.describe_checkpoint(ckpt).capitalize()} is saved "
            f"in {ckpt}; continue with `{shlex.join(resume)}` (it takes the settings from the "
            f"checkpoint).{kept}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = _parser().parse_args(argv)
    before = None
    if args.command in ("train", "run"):
        before = rundir.file_identity(Path(args.run_dir) / rundir.STAGING / rundir.CHECKPOINT)
    commands = {"fetch-data": _cmd_fetch, "evaluate": _cmd_evaluate, "import-model": _cmd_import,
                "sweep": _cmd_sweep, "report": _cmd_report, "score": _cmd_score,
                "repeat": _cmd_repeat,
                "train": lambda a: _cmd_train(a, with_results=False),
                "run": lambda a: _cmd_train(a, with_results=True)}
    try:
        commands[args.command](args)
    except VAEError as exc:
        print(f"vae-mnist: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(_interrupted(args, argv, before), file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
