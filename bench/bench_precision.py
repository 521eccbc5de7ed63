"""fp32 against bf16 mixed precision, in one run on one device: speed, arithmetic floors, quality.

    VAE_MNIST_DIR=<MNIST folder> python bench/bench_precision.py [--device auto] [--json FILE]

- speed: the vae_core epoch (training pass + held-out pass, z = 2, batch 128, the lab's data)
  in fp32 and in bf16, each the best of ``--speed-epochs`` epochs of one run;
- floors: the five 128x784x256 matrix products of every training step, an epoch's worth, in
  fp32 and in bf16 (what the arithmetic alone costs on this device);
- quality: the held-out neg-ELBO after ``--epochs`` epochs, fp32 and bf16, for each latent size
  and seed (the targets: bf16 within 0.5 nat of fp32 at z = 2 and z = 20 over 3 seeds);
- the whole ``vae-mnist run`` wall time in both precisions (``--cli``).

bf16 runs only where the device computes it natively (``vae_core.training.loop.native_bf16``); elsewhere
the script says so and measures how slow emulated bf16 products are instead. Results are written
to ``--json`` after every part, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vae_core.config import TrainConfig  # noqa: E402
from vae_core.data.sources import prepare_mnist  # noqa: E402
from vae_core.data.splits import load_mnist  # noqa: E402
from vae_core.training.loop import native_bf16, resolve_device, train  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gemm_floor(dtype: torch.dtype, device: torch.device, steps: int = 375,
               repeats: int = 3) -> float:
    """Seconds for an epoch's worth (375 steps of batch 128) of the five big products of a
    training step: encoder and decoder forward, decoder grad-input, two grad-weights."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 784, generator=g).to(device, dtype)
    w1 = torch.randn(784, 256, generator=g).to(device, dtype)
    w2 = torch.randn(256, 784, generator=g).to(device, dtype)
    h, y, gh = (torch.empty(n, m, device=device, dtype=dtype)
                for n, m in ((128, 256), (128, 784), (128, 256)))
    gw1 = torch.empty(784, 256, device=device, dtype=dtype)
    gw2 = torch.empty(256, 784, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first round warms up
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            torch.mm(x, w1, out=h)
            torch.mm(h, w2, out=y)
            torch.mm(y, w2.t(), out=gh)
            torch.mm(h.t(), y, out=gw2)
            torch.mm(x.t(), gh, out=gw1)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def epoch_seconds(config: TrainConfig, data, epochs: int) -> float:
    """The fastest epoch (training + held-out pass) of one run."""
    result = train(config.replace(epochs=epochs), data, progress=False)
    return min(row["seconds"] for row in result.history)


def bf16_speed(config: TrainConfig, data, device: torch.device, epochs: int) -> dict:
    """bf16 on ``device``: its GEMM floor and the fastest bf16 vae_core epoch where the device
    computes bf16 natively; elsewhere (vae_core refuses bf16 there) what an epoch's worth of
    emulated products costs."""
    if not native_bf16(device):
        return {"native": False, "floor_emulated_s": gemm_floor(
            torch.bfloat16, device, steps=20, repeats=1) * 375 / 20}
    return {"native": True, "floor_s": gemm_floor(torch.bfloat16, device),
            "s_per_epoch": epoch_seconds(config.replace(precision="bf16"), data, epochs)}


def cli_wall(root: Path, precision: str, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "vae_core.cli", "run", "--quiet",
                               "--data-dir", str(root), "--run-dir", f"{tmp}/run",
                               "--precision", precision, "--device", device],
                              capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr.strip().splitlines()[-1]}
        summary = json.loads(Path(f"{tmp}/run/summary.json").read_text())
    return {"wall_s": round(wall, 1), "neg_elbo": summary["final_test_loss"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--speed-epochs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30, help="epochs of each quality run")
    p.add_argument("--latent-dims", type=int, nargs="*", default=[2, 20])
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--cli", action="store_true", help="also time `vae-mnist run` both ways")
    p.add_argument("--limit", type=int, help="only N training and N held-out images (smoke)")
    p.add_argument("--json", help="write the results here (after every part)")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    root = prepare_mnist()
    base = TrainConfig(device=device.type, train_limit=args.limit, eval_limit=args.limit)
    data = load_mnist(base, root)
    bf16 = native_bf16(device)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else (
        platform.processor() or platform.machine())
    res: dict = {"device": f"{device.type}: {name}", "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "native_bf16": bf16,
                 "images": [len(data.train), len(data.eval)]}

    def save() -> None:
        print(json.dumps(res, indent=2), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")

    res["floor_fp32_s"] = gemm_floor(torch.float32, device)
    res["epoch_fp32_s"] = epoch_seconds(base, data, args.speed_epochs)
    speed = bf16_speed(base, data, device, args.speed_epochs)
    if bf16:
        res["floor_bf16_s"], res["epoch_bf16_s"] = speed["floor_s"], speed["s_per_epoch"]
        res["bf16_epoch_over_fp32_floor"] = res["epoch_bf16_s"] / res["floor_fp32_s"]
    else:  # what refusing saves the user from
        res["floor_bf16_emulated_s"] = speed["floor_emulated_s"]
    res["fp32_epoch_over_fp32_floor"] = res["epoch_fp32_s"] / res["floor_fp32_s"]
    save()
    if bf16 and args.epochs:
        res["quality"] = []
        for z in args.latent_dims:
            for seed in args.seeds:
                row = {"latent_dim": z, "seed": seed}
                for precision in ("fp32", "bf16"):
                    cfg = base.replace(latent_dim=z, seed=seed, epochs=args.epochs,
                                       precision=precision)
                    t0 = time.perf_counter()
                    history = train(cfg, data, progress=False).history
                    row[precision] = history[-1]["test_loss"]
                    row[f"{precision}_s"] = round(time.perf_counter() - t0, 1)
                row["bf16_minus_fp32"] = row["bf16"] - row["fp32"]
                res["quality"].append(row)
                save()
        for z in args.latent_dims:
            rows = [r for r in res["quality"] if r["latent_dim"] == z]
            mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("fp32", "bf16")}
            res[f"z{z}_mean_gap"] = mean["bf16"] - mean["fp32"]
        save()
    if args.cli:
        res["cli_fp32"] = cli_wall(root, "fp32", device.type)
        res["cli_bf16"] = cli_wall(root, "bf16", device.type)
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
