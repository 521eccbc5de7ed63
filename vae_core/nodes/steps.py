"""One function per KNIME node: plain data in (flow-variable dict, DataFrames, model object),
DataFrames + PNG bytes out.

The scripts in ``nodes/`` only move data between ``knime.scripting.io`` and these functions,
so all the logic is testable without KNIME. Tables come from :mod:`vae_core.outputs.tables` (fresh
RangeIndex → unique RowIDs, KNIME-safe dtypes); figures from :mod:`vae_core.outputs.lab_figures`.
Downstream nodes draw their random picks from the *model's* seed, exactly like
:func:`vae_core.outputs.results.lab_results`, so the workflow reproduces ``vae-mnist run``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import torch

from vae_core.config import (
    ARCHITECTURE,
    OBJECTIVE,
    OPTIMISATION,
    SEED,
    SETTINGS,
    Setting,
    TrainConfig,
    settings,
)
from vae_core.data.splits import MNISTData, Split, check_batch_size, load_mnist
from vae_core.errors import CheckpointError, ConfigError, TableError, named_by
from vae_core.model.network import VAE
from vae_core.outputs import lab_figures, results, tables
from vae_core.seeds import derive_seed
from vae_core.training.loop import resolve_device, train
from vae_core.training.model_file import (
    TrainedVAE,
    load_model_file,
    model_record,
    resolve_model_path,
    save_model_file,
)
from vae_core.training.rundir import finished_checkpoint

if int(pd.__version__.split(".")[0]) >= 3:  # KNIME's table conversion rejects pandas 3 tables
    raise ImportError(f"pandas {pd.__version__} is installed, but KNIME's Python nodes fail with "
                      "pandas 3 (\"Data type 'large_string' in column '<RowID>' is not "
                      "supported\"). Install pandas<3 in KNIME's Python environment "
                      "(environment.yml, docs/KNIME.md).")

# Workflow variables the nodes read beside the training settings KNIME exposes: the MNIST
# folder ("" = the default), the model file (relative: in the workflow's data area) and whether
# Save Model may replace a different model (0 / 1).
NODE_VARIABLES = ("data_dir", "model_path", "overwrite_model")
# KNIME's type of a setting's workflow variable. The batch executor knows only int, double and
# String, so a yes/no setting is an int 0 / 1, like overwrite_model.
WORKFLOW_TYPES = {int: "INTEGER", float: "DOUBLE", str: "STRING", bool: "INTEGER"}


def workflow_variables(table: tuple[Setting, ...] = SETTINGS
                       ) -> tuple[tuple[str, str, int | float | str], ...]:
    """``(name, KNIME type, default)`` of every setting KNIME exposes. An optional count (no
    limit by default) is 0 for "all images"; a yes/no setting is 0 or 1."""
    return tuple((s.name, WORKFLOW_TYPES[s.type],
                  0 if s.default is None else int(s.default) if s.type is bool else s.default)
                 for s in table if s.knime)


_CONFIG_VARIABLES = tuple(name for name, _, _ in workflow_variables())
FLOW_VARIABLES = (*_CONFIG_VARIABLES, *NODE_VARIABLES)  # declared in workflow.knime
_OPTIONAL = tuple(s.name for s in SETTINGS if s.optional)  # 0 means "not limited"
HINT = ("Fix the workflow variable (right-click the workflow > Workflow Variables..., or "
         "-workflow.variable=NAME,VALUE,TYPE in batch mode).")
# A training setting's home: VAE_MNIST's Train VAE dialog, else a workflow variable.
SETTING_HINT = ("Fix the setting: in VAE_MNIST in the Train VAE component's dialog (double-click "
                "it; batch mode: -option, docs/KNIME.md section 4), in the other workflows the "
                "workflow variable (right-click the workflow > Workflow Variables..., or "
                "-workflow.variable=NAME,VALUE,TYPE in batch mode).")
# The model file both the main and the apply workflow use by default: in the main workflow's
# data area, so it travels with that workflow and the apply workflow beside it finds it.
DEFAULT_MODEL_FILE = "vae_mnist_model.pt"
APPLY_MODEL_PATH = f"../../VAE_MNIST/data/{DEFAULT_MODEL_FILE}"
# Image cells: KNIME stores each as its own file, so only small tables carry them.
EXPLORER_ROWS = 1000  # encoded images the latent explorer shows with their digits
DECODE_IMAGE_ROWS = 1000  # decoded rows that get an image cell (the rest: a missing cell)
# Flow variables Train VAE pushes (plain floats): the last epoch's losses, nats per image.
RESULT_VARIABLES = {"vae_train_loss": "train_loss", "vae_train_recon": "train_recon",
                    "vae_train_kl": "train_kl", "vae_heldout_loss": "test_loss",
                    "vae_heldout_recon": "test_recon", "vae_heldout_kl": "test_kl"}
# Settings a loss table carries in every row (what made the model; not where it ran).
LOSS_TABLE_SETTINGS = settings(ARCHITECTURE, OBJECTIVE, OPTIMISATION, SEED)
# How a node's messages name the paths the user sets: the workflow variables, not CLI flags.
KNIME_NAMES = {"run_dir": "the workflow variable sweep_dir",
               "out": "the workflow variable sweep_dir",
               "model": "the workflow variable model_path",
               "data_dir": "the workflow variable data_dir"}
_F = TypeVar("_F", bound=Callable[..., Any])


def knime_step(step: _F) -> _F:
    """Run ``step`` with messages in KNIME's words (:data:`KNIME_NAMES`)."""
    @functools.wraps(step)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with named_by(**KNIME_NAMES):
            return step(*args, **kwargs)
    return wrapped  # type: ignore[return-value]


@dataclass(frozen=True)
class NodeParams:
    """Validated settings of a node: the training config, the MNIST folder (None = default),
    and where Save / Load Model put the model."""

    config: TrainConfig
    data_dir: str | None = None
    model_path: str = DEFAULT_MODEL_FILE
    overwrite_model: bool = False


def params_from_flow_variables(flow_variables: Mapping[str, Any]) -> NodeParams:
    """Cast and validate KNIME flow variables; other variables (``knime.*``, ...) are ignored.

    Raises :class:`ConfigError` with one clear message, e.g. for ``epochs = "abc"``.
    """
    values = {k: flow_variables[k] for k in _CONFIG_VARIABLES if k in flow_variables}
    for name in _OPTIONAL:
        value = values.get(name)
        if not isinstance(value, bool) and value in (0, "0", ""):
            values[name] = None
    data_dir = flow_variables.get("data_dir", "")
    if not isinstance(data_dir, str):
        raise ConfigError(f"data_dir must be a string (a folder path), got {data_dir!r}. {HINT}")
    model_path = flow_variables.get("model_path", DEFAULT_MODEL_FILE)
    if not isinstance(model_path, str) or not model_path.strip():
        raise ConfigError(f"model_path must be a file path, got {model_path!r}. {HINT}")
    overwrite = flow_variables.get("overwrite_model", 0)
    if isinstance(overwrite, bool) or overwrite not in (0, 1, "0", "1"):
        raise ConfigError(f"overwrite_model must be 0 (keep a different model already saved) or "
                          f"1 (replace it), got {overwrite!r}. {HINT}")
    try:
        config = TrainConfig.from_dict(values, source="the flow variables")
    except ConfigError as exc:
        raise ConfigError(f"{exc} {SETTING_HINT}") from None
    return NodeParams(config=config, data_dir=data_dir.strip() or None,
                      model_path=model_path.strip(), overwrite_model=int(overwrite) == 1)


# ----------------------------------------------------------------------------- outputs
class LoadOutput(NamedTuple):
    train: pd.DataFrame  # the training images (input of Train VAE)
    heldout: pd.DataFrame  # the held-out images: Train VAE's per-epoch loss, Encode, Reconstruct
    samples: pd.DataFrame  # 64 random training images (Fig. 1)
    png: bytes


class TrainOutput(NamedTuple):
    loss: pd.DataFrame  # one row per epoch, with the settings in every row
    model: dict[str, Any]  # the model record (vae_core.training.model_file), for the object port
    png: bytes
    flow_variables: dict[str, float]  # RESULT_VARIABLES, plain floats


class TableAndImage(NamedTuple):
    table: pd.DataFrame
    png: bytes


class EncodeOutput(NamedTuple):
    latent: pd.DataFrame  # every image: ids, z1..zk, logvar1..k
    explorer: pd.DataFrame  # a seeded sample: ids, plot_x, plot_y, z1..zk and the digit image
    png: bytes
    flow_variables: dict[str, str]  # what plot_x / plot_y are (axis titles of the explorer)


class ModelAndTable(NamedTuple):
    model: dict[str, Any]
    table: pd.DataFrame
    flow_variables: dict[str, Any]  # model_file, model_saved_at, model_workflow, model_<setting>


# ----------------------------------------------------------------------------- steps
@knime_step
def load_mnist_step(params: NodeParams, n_samples: int = 64) -> LoadOutput:
    """Load MNIST: training and held-out images as tables, 64 samples as a table and PNG."""
    data = load_mnist(params.config, params.data_dir)
    samples, images = results.sample_part(data.train, n_samples, params.config.seed)
    samples = tables.with_image_column(samples, images)
    tr, ev = data.train, data.eval
    return LoadOutput(tables.image_table(tr.ids, tr.source, tr.labels, tr.images),
                      tables.image_table(ev.ids, ev.source, ev.labels, ev.images),
                      samples, lab_figures.figure_png(lab_figures.samples_figure(images)))


@knime_step
def train_step(params: NodeParams, train_table: pd.DataFrame, heldout_table: pd.DataFrame,
               log: Callable[[str], None] = print) -> TrainOutput:
    """Train a VAE on the images of ``train_table``; ``heldout_table`` gives the held-out loss
    of every epoch. Returns the loss table, the model record, the loss curve and the results
    as flow variables."""
    data = MNISTData(train=split_from_table(train_table, "training table (input 1)"),
                     eval=split_from_table(heldout_table, "held-out table (input 2)"))
    check_batch_size(params.config, len(data.train), "the training table (input 1)")
    return _train(params.config, data, log)


@knime_step
def legacy_train_step(params: NodeParams, log: Callable[[str], None] = print) -> TrainOutput:
    """The legacy Python Source node has no input port: it loads MNIST (data_dir) itself."""
    return _train(params.config, load_mnist(params.config, params.data_dir), log)


def _train(config: TrainConfig, data: MNISTData, log: Callable[[str], None]) -> TrainOutput:
    log(f"Training on {len(data.train)} images, held-out loss on {len(data.eval)}, "
        f"{config.epochs} epochs.")

    def report(row: dict) -> None:
        log(f"epoch {row['epoch']}/{config.epochs}: train loss {row['train_loss']:.2f}, "
            f"held-out loss {row['test_loss']:.2f}")

    result = train(config, data, progress=False, on_epoch=report)
    counts = {"train_images": len(data.train), "heldout_images": len(data.eval)}
    record = model_record(result.model, config, result.history, counts, result.reference)
    loss = tables.loss_table(result.history)
    made_by = {k: v for k, v in config.to_dict().items() if k in LOSS_TABLE_SETTINGS}
    last = result.history[-1]
    results = {name: float(last[column]) for name, column in RESULT_VARIABLES.items()}
    return TrainOutput(tables.with_settings(loss, {**made_by, **counts}), record,
                       lab_figures.figure_png(lab_figures.loss_figure(loss)), results)


@knime_step
def encode_step(model: Any, table: pd.DataFrame, params: NodeParams,
                explorer_rows: int = EXPLORER_ROWS) -> EncodeOutput:
    """Latent means of every image: image_id, source, label, digit, z1..zk, logvar1..k (Fig. 6);
    and the latent explorer: ``explorer_rows`` seeded images with the two plotted coordinates
    (z1, z2, or the first two principal components of all latent means) and their digits."""
    vae, seed = _model(model, params)
    split = split_from_table(table)
    latent = results.latent_part(vae, split)
    plane, x_title, y_title = tables.latent_plane(latent[tables.z_columns(vae.latent_dim)])
    rows = results.pick(len(latent), explorer_rows, derive_seed(seed, "explorer")).sort().values
    explorer = latent.iloc[rows.numpy()].drop(
        columns=[c for c in latent.columns if c.startswith("logvar")])
    explorer.insert(4, "plot_x", plane[rows.numpy(), 0])
    explorer.insert(5, "plot_y", plane[rows.numpy(), 1])
    explorer = tables.with_image_column(explorer.reset_index(drop=True), split.images[rows])
    return EncodeOutput(latent, explorer, lab_figures.figure_png(lab_figures.latent_figure(latent)),
                        {"latent_x_title": x_title, "latent_y_title": y_title})


@knime_step
def reconstruct_step(model: Any, table: pd.DataFrame, params: NodeParams, n: int = 10
                     ) -> TableAndImage:
    """``n`` seeded random images of the table and their reconstructions (Fig. 5), each row
    with its digit as an image cell."""
    vae, seed = _model(model, params)
    recon, originals, recons = results.reconstruction_part(vae, split_from_table(table), n, seed)
    pairs = torch.stack([originals, recons], dim=1).reshape(-1, originals.shape[-1])
    return TableAndImage(tables.with_image_column(recon, pairs),
                         lab_figures.figure_png(lab_figures.reconstruction_figure(originals, recons)))


@knime_step
def generate_step(model: Any, params: NodeParams, n: int = 64) -> TableAndImage:
    """``n`` digits decoded from z ~ N(0, I) (Fig. 7), with image cells."""
    vae, seed = _model(model, params)
    generated, images = results.generated_part(vae, n, seed)
    return TableAndImage(tables.with_image_column(generated, images),
                         lab_figures.figure_png(lab_figures.generated_figure(images)))


@knime_step
def decode_step(model: Any, table: pd.DataFrame, params: NodeParams) -> TableAndImage:
    """Decode the latent points z1..zk of a table (e.g. the latent explorer, a grid you made);
    the first ``DECODE_IMAGE_ROWS`` rows also get their digit as an image cell."""
    vae, _ = _model(model, params)
    z = tables.latents_from_table(table, vae.latent_dim)
    with torch.no_grad():
        images = vae.decode(z.to(next(vae.parameters()).device)).cpu()
    decoded = tables.with_image_column(tables.generated_table(z, images), images,
                                       limit=DECODE_IMAGE_ROWS)
    return TableAndImage(decoded, lab_figures.figure_png(lab_figures.generated_figure(images[:256])))


@knime_step
def save_model_step(model: Any, params: NodeParams, data_area: str) -> pd.DataFrame:
    """Write the model to ``model_path`` (relative: in the workflow data area); one-row table
    saying where, whether it was written, and what the model is."""
    trained = TrainedVAE.from_record(model)
    path = resolve_model_path(params.model_path, data_area)
    status = save_model_file(path, trained, overwrite=params.overwrite_model)
    return _model_info(trained, path, status)


@knime_step
def load_model_step(params: NodeParams, data_area: str) -> ModelAndTable:
    """Read the model at ``model_path``: a Save Model file, or a ``vae-mnist run`` folder or
    its checkpoint.pt. The record is validated before it goes on the port; where the file lies,
    when it was saved and its settings go out as flow variables, so a model another workflow
    saved (a renamed import, an old run) is never used unseen."""
    path = resolve_model_path(params.model_path, data_area).resolve()
    if not path.exists():
        raise CheckpointError(
            f"Model file {path} does not exist (model_path = {params.model_path!r}). Run the "
            "workflow that saves the model first (Save Model), or set the workflow variable "
            "model_path to the model file: absolute, or relative to this workflow's data folder. "
            "A workflow "
            "imported beside one of the same name is renamed (VAE_MNIST becomes VAE_MNIST1): "
            "then use ../../VAE_MNIST1/data/vae_mnist_model.pt.")
    trained = load_model_file(path)
    if path.is_dir():  # a run folder: the file is its finished checkpoint
        path = finished_checkpoint(path)
    info = _model_info(trained, path, "loaded")
    flow = {"model_file": str(path), "model_saved_at": info.at[0, "saved_at"],
            "model_workflow": info.at[0, "workflow"],
            **{f"model_{name}": trained.record["config"][name] for name in LOSS_TABLE_SETTINGS
               if name in trained.record["config"]}}
    return ModelAndTable(trained.record, info, _flow_safe(flow))


# ----------------------------------------------------------------------------- helpers
def _model(obj: Any, params: NodeParams) -> tuple[VAE, int]:
    """The torch model on the configured device, and the seed it was trained with."""
    trained = TrainedVAE.from_record(obj)
    return trained.model(resolve_device(params.config.device)), trained.config.seed


def _flow_safe(values: dict[str, Any]) -> dict[str, Any]:
    """KNIME flow variables take int, float, str and bool: a yes/no setting goes out as 0 / 1,
    like its workflow variable (WORKFLOW_TYPES)."""
    return {k: int(v) if isinstance(v, bool) else v for k, v in values.items()}


def _saved_where_and_when(path: Path) -> tuple[str, str]:
    """The file's modification time (UTC; the model file is written in one atomic step) and the
    workflow whose data area holds it ("" when it lies elsewhere)."""
    stamp = pd.Timestamp(path.stat().st_mtime, unit="s", tz="UTC")
    workflow = path.parent.parent.name if path.parent.name == "data" else ""
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC"), workflow


def _model_info(trained: TrainedVAE, path: Path, status: str) -> pd.DataFrame:
    """One row: the file, when it was saved and by which workflow's data area, what happened
    to it, the model's settings and last losses."""
    last = trained.history[-1] if trained.history else {}
    saved_at, workflow = _saved_where_and_when(path.resolve())
    row = {"model_path": str(path.resolve()), "status": status, "saved_at": saved_at,
           "workflow": workflow, "summary": trained.record["summary"],
           **{k: v for k, v in trained.record["config"].items() if k in LOSS_TABLE_SETTINGS},
           "epochs_trained": len(trained.history),
           **{name: float(last.get(column, float("nan")))
              for name, column in RESULT_VARIABLES.items()}}
    return tables.with_settings(pd.DataFrame(index=range(1)), row)


def split_from_table(df: pd.DataFrame, what: str = "input table") -> Split:
    """Images of a KNIME table (pixel_0..pixel_783; image_id, label, source if present)."""
    images = tables.images_from_table(df, what=what)
    labels = torch.from_numpy(tables.labels_from_table(df))
    ids = torch.arange(len(df), dtype=torch.int64)
    if "image_id" in df.columns:
        raw = pd.to_numeric(df["image_id"], errors="coerce").to_numpy(dtype=np.float64,
                                                                      na_value=np.nan)
        if not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
            raise TableError(f"Column image_id of the {what} must hold whole numbers without "
                             "missing values.")
        ids = torch.from_numpy(raw.astype(np.int64))
    source: str | list[str] = "table"
    if "source" in df.columns:
        values = ["" if pd.isna(v) else str(v) for v in df["source"]]
        source = values[0] if len(set(values)) == 1 else values
    return Split(images=images, labels=labels, ids=ids, source=source)
