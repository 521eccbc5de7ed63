"""The experiments workflow's node: the lab's latent size x beta grid through the project's sweep,
with its settings read from flow variables, and the claims as a table."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from vae_core.errors import ConfigError
from vae_core.evaluation.run_metrics import DEFAULT_IW_IMAGES, DEFAULT_IW_K
from vae_core.experiments.sweep import DEFAULT_BETAS, DEFAULT_LATENTS, run_sweep
from vae_core.nodes.steps import HINT, NodeParams, knime_step, params_from_flow_variables

# Variables of the experiments workflow beyond the training ones: the grid and the evaluation.
EXPERIMENT_VARIABLES = ("latent_dims", "betas", "iw_k", "iw_images", "sweep_dir")
DEFAULT_SWEEP_DIR = "sweep"  # relative: in the workflow's data area


@dataclass(frozen=True)
class SweepParams:
    """The experiments node's settings: shared training settings, the grid, where it lives."""

    base: NodeParams
    latent_dims: tuple[int, ...]
    betas: tuple[float, ...]
    iw_k: int
    iw_images: int
    sweep_dir: str


class ExperimentsOutput(NamedTuple):
    experiments: pd.DataFrame  # one row per configuration (the sweep's experiments.csv)
    claims: pd.DataFrame  # one row per claim or target: verdict and the numbers deciding it
    figures: list[bytes]  # PNG: trade-off, metrics against latent size, KL per dimension
    flow_variables: dict[str, int]  # configurations trained now / kept from an earlier run


SWEEP_FIGURES = ("tradeoff", "metrics_vs_latent", "kl_per_dim")


def _number_list(name: str, value: Any, cast: Callable[[str], Any], default: tuple) -> tuple:
    """A comma-separated list; absent = ``default``. Blank, an empty item ("2,,5") or a
    non-number is refused rather than guessed (a blank would silently run the whole grid)."""
    if value is None:
        return default
    items = [v.strip() for v in str(value).split(",")]
    example = ",".join(f"{v:g}" for v in default)
    if not any(items):
        raise ConfigError(f"{name} is empty. Give a comma-separated list of numbers such as "
                          f"\"{example}\" (the lab's grid). {HINT}")
    if not all(items):
        raise ConfigError(f"{name} = {value!r} has an empty item. Give a comma-separated list of "
                          f"numbers such as \"{example}\", without empty places. {HINT}")
    try:
        return tuple(cast(v) for v in items)
    except ValueError:
        raise ConfigError(f"{name} must be a comma-separated list of numbers such as "
                          f"\"{example}\", got {value!r}. {HINT}") from None


def sweep_params_from_flow_variables(flow_variables: Mapping[str, Any]) -> SweepParams:
    """The experiments workflow's variables, validated (one clear message each)."""
    base = params_from_flow_variables(flow_variables)
    values = {k: flow_variables.get(k) for k in EXPERIMENT_VARIABLES}
    evaluation = {}
    for name, default in (("iw_k", DEFAULT_IW_K), ("iw_images", DEFAULT_IW_IMAGES)):
        value = default if values[name] is None else values[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}. {HINT}")
        evaluation[name] = value
    sweep_dir = values["sweep_dir"] if values["sweep_dir"] is not None else DEFAULT_SWEEP_DIR
    if not isinstance(sweep_dir, str) or not sweep_dir.strip():
        raise ConfigError(f"sweep_dir must be a folder path, got {sweep_dir!r}. {HINT}")
    return SweepParams(
        base=base,
        latent_dims=_number_list("latent_dims", values["latent_dims"], int, DEFAULT_LATENTS),
        betas=_number_list("betas", values["betas"], float, DEFAULT_BETAS),
        sweep_dir=sweep_dir.strip(), **evaluation)


@knime_step
def experiments_step(params: SweepParams, data_area: str,
                     log: Callable[[str], None] = print) -> ExperimentsOutput:
    """The lab's grid with the project's sweep (``vae-mnist sweep``): trains what is not
    finished in ``sweep_dir`` (relative: in the data area), so re-executing after a cancel or
    a crash continues; then the experiments table, the claims and the trade-off figures."""
    out_dir = Path(data_area) / Path(params.sweep_dir).expanduser()
    res = run_sweep(out_dir, params.base.config, latent_dims=params.latent_dims,
                    betas=params.betas, data_dir=params.base.data_dir, iw_k=params.iw_k,
                    iw_images=params.iw_images, log=log, lab_outputs=False)
    experiments = res.experiments.copy()
    experiments.insert(1, "latent", pd.array([f"z={z}" for z in experiments["latent_dim"]],
                                             dtype="string"))
    figures = [(res.out_dir / "figures" / f"{name}.png").read_bytes() for name in SWEEP_FIGURES]
    return ExperimentsOutput(experiments, claims_table(res.claims), figures,
                             {"sweep_trained": len(res.trained), "sweep_kept": len(res.reused)})


def claims_table(claims: dict) -> pd.DataFrame:
    """The verdicts as a table: kind (claim | target), the statement, verdict, how it was
    measured, and the numbers that decide it (JSON text)."""
    rows = [{"kind": "claim", "statement": c["claim"], "verdict": c["verdict"],
             "measure": c["measure"], "numbers": json.dumps(c["numbers"], sort_keys=True),
             "note": c.get("note", "")} for c in claims.get("claims", [])]
    rows += [{"kind": "target", "statement": t["target"],
              "verdict": "met" if t["met"] else "not met", "measure": "",
              "numbers": json.dumps(t["value"], sort_keys=True), "note": ""}
             for t in claims.get("targets", [])]
    columns = ["kind", "statement", "verdict", "measure", "numbers", "note"]
    return pd.DataFrame(rows, columns=columns).astype("string")
