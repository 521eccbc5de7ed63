"""KNIME-side table I/O of the main workflow vs its training time, per pixel representation.

    VAE_MNIST_DIR=<MNIST folder> python bench/bench_tables.py [--epochs-timed 2] [--json FILE]

Every table port of VAE_MNIST at its defaults (60k file, 48,000 training / 12,000 held-out
images, 30 epochs) is timed through KNIME 5.5.3's real Python conversion (KNIME's Python sources,
driven by tests/knime_double/knime_ports.py): ``Table.from_pandas`` + the real ArrowDataSink
writing the port file (the sending node), then the real ArrowSourceTable reading it +
``to_pandas`` + the step's table reader (each receiving node). Pixels go once as float64 in
[0, 1] and once as int32 grey levels 0-255. Java's side of a port (copying the file into its
table store) is not timed: it does not exist here. Training is timed in the same run (the
Train VAE step's own training, ``epochs_timed`` epochs, scaled to 30); nothing else may run.
Last, the start-up cost of one Python node process (what a KNIME loop pays per iteration).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "knime_double"))  # KNIME's real conversion, test-only
sys.path.insert(0, str(ROOT))

from knime_ports import new_port_dir, read_table, write_table  # noqa: E402
from knime_runner import Table  # noqa: E402

from vae_core.config import TrainConfig  # noqa: E402
from vae_core.data.splits import MNISTData, load_mnist  # noqa: E402
from vae_core.nodes import steps  # noqa: E402
from vae_core.outputs import results, tables  # noqa: E402
from vae_core.training.loop import train  # noqa: E402
from vae_core.training.model_file import TrainedVAE, model_record  # noqa: E402

TARGET = 0.15  # table I/O at most this share of the workflow's training time


def _send(df: pd.DataFrame, folder: Path, name: str) -> tuple[Path, float]:
    started = time.perf_counter()
    path = folder / f"{name}.arrow"
    write_table(Table.from_pandas(df), path)
    return path, time.perf_counter() - started


def _receive(path: Path, reader=None) -> float:
    started = time.perf_counter()
    df = read_table(path).to_pandas()
    if reader is not None:
        reader(df)
    return time.perf_counter() - started


def _edge(costs: dict, name: str, df: pd.DataFrame, folder: Path, readers: int,
          reader=None) -> None:
    """One output port: sent once, received by ``readers`` downstream nodes."""
    path, sent = _send(df, folder, f"t{len(costs)}")
    costs[name] = sent + sum(_receive(path, reader) for _ in range(readers))


def port_costs(data: MNISTData, record: dict, representation: str) -> dict[str, float]:
    """Seconds of every table port of VAE_MNIST, each table exactly as its node makes it
    (vae_core.nodes.steps), sent once and received once per node it feeds."""
    def image_table(split):
        df = tables.image_table(split.ids, split.source, split.labels, split.images)
        if representation == "float64":
            pixels = df[tables.PIXEL_COLUMNS].to_numpy(np.float64) / 255.0
            df[tables.PIXEL_COLUMNS] = pixels
        return df

    params = steps.params_from_flow_variables({"device": "cpu"})
    folder = new_port_dir(f"bench-{representation}")
    costs: dict[str, float] = {}
    heldout = image_table(data.eval)
    _edge(costs, "training images: Load MNIST -> Train VAE", image_table(data.train), folder, 1,
          tables.images_from_table)
    _edge(costs, "held-out images: Load MNIST -> Train VAE, Encode, Reconstruct", heldout,
          folder, 3, tables.images_from_table)
    samples, images = results.sample_part(data.train, 64, 0)
    _edge(costs, "64 samples + image cells: Load MNIST -> Table View",
          tables.with_image_column(samples, images), folder, 1)
    encoded = steps.encode_step(record, heldout, params)
    _edge(costs, "latent table: Encode -> Scatter Plot", encoded.latent, folder, 1)
    _edge(costs, "latent explorer + image cells: Encode -> Scatter Plot, Table View, Decode",
          encoded.explorer, folder, 3)
    _edge(costs, "decoded + image cells: Decode output",
          steps.decode_step(record, encoded.explorer, params).table, folder, 0)
    _edge(costs, "reconstructions + image cells: Reconstruct -> Table View",
          steps.reconstruct_step(record, heldout, params).table, folder, 1)
    _edge(costs, "generated + image cells: Generate -> Table View",
          steps.generate_step(record, params).table, folder, 1)
    _edge(costs, "loss table: Train VAE -> Line Plot",
          tables.with_settings(TrainedVAE.from_record(record).loss_table(), {"seed": 0}),
          folder, 1)
    costs["port files written (MB)"] = sum(p.stat().st_size for p in folder.rglob("*")
                                           if p.is_file()) / 1e6
    return costs


NODE_START = ("import sys\nimport knime.scripting.io as knio\n"
              "sys.path.insert(0, knio.get_workflow_data_area_dir())\n"
              "from vae_core.nodes.steps import params_from_flow_variables\n")


def node_start_seconds(repeats: int = 3) -> float:
    """Median wall time of a fresh node process that starts, imports what every node script
    imports (KNIME's Python side, vae_core.nodes.steps, torch) and finishes: what a KNIME loop pays
    again for each iteration of a Python node."""
    import shutil
    import tempfile

    from knime_runner import run_script_isolated

    times = []
    with tempfile.TemporaryDirectory() as tmp:  # a copy: running writes __pycache__ into data/
        workflow = Path(tmp) / "VAE_MNIST"
        shutil.copytree(ROOT / "knime_workflow" / "VAE_MNIST", workflow)
        for _ in range(repeats):
            started = time.perf_counter()
            run_script_isolated(NODE_START, workflow_dir=workflow, flow_variables={})
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs-timed", type=int, default=2,
                        help="training epochs timed (scaled to the workflow's 30)")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="fewer images (smoke test only; the figures need all)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    workflow = TrainConfig(device="cpu")  # VAE_MNIST's defaults (30 epochs)
    limits = {} if args.train_limit is None else {"train_limit": args.train_limit,
                                                  "eval_limit": args.train_limit // 4}
    data = load_mnist(workflow.replace(**limits), None)
    timed = workflow.replace(epochs=args.epochs_timed, **limits)
    started = time.perf_counter()
    result = train(timed, data, progress=False)
    record = model_record(result.model, timed, result.history)
    train_seconds = (time.perf_counter() - started) / args.epochs_timed * workflow.epochs
    report = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{torch.get_num_threads()} torch threads",
              "python": platform.python_version(), "pandas": pd.__version__,
              "images": [len(data.train), len(data.eval)],
              "train_seconds_30_epochs": round(train_seconds, 1), "representations": {}}
    print(f"Training, {len(data.train)} images: {train_seconds / workflow.epochs:.2f} s/epoch "
          f"-> {train_seconds:.1f} s for the workflow's {workflow.epochs} epochs")
    for representation in ("float64", "int32"):
        costs = port_costs(data, record, representation)
        megabytes = costs.pop("port files written (MB)")
        total = sum(costs.values())
        ratio = total / train_seconds
        report["representations"][representation] = {
            "ports": {k: round(v, 3) for k, v in costs.items()},
            "total_seconds": round(total, 2), "share_of_training": round(ratio, 4),
            "port_files_mb": round(megabytes, 1)}
        print(f"\npixels as {representation}: table I/O {total:.2f} s = {ratio:.1%} of training"
              f" ({'meets' if ratio <= TARGET else 'misses'} the {TARGET:.0%} target); port "
              f"files {megabytes:.0f} MB")
        for name, seconds in costs.items():
            print(f"  {seconds:7.2f} s  {name}")
    start = node_start_seconds()
    report["node_start_seconds"] = round(start, 2)
    print(f"\nA fresh Python node process (start, imports, finish): {start:.2f} s (median of 3)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
