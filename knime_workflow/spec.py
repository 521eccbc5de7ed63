"""Declarative description of the two KNIME workflows; ``build.py`` turns it into files.

Ports are named ``"<kind> <n>"`` (kind = table | image | object, n counted from 1 within the
kind, as the Python Script node's port groups count them); the builder maps them to KNIME's
port indices (0 is always the implicit flow-variable port).
"""

from __future__ import annotations

from dataclasses import dataclass

from vae_core.config import TrainConfig
from vae_core.tables import LOSS_COLUMNS


@dataclass(frozen=True)
class Variable:
    """A workflow variable: overridable in batch mode with -workflow.variable=name,value,type."""

    name: str
    kind: str  # INTEGER | DOUBLE | STRING (KNIME's VariableType identifiers)
    value: int | float | str


@dataclass(frozen=True)
class PythonScript:
    """New Python Script node (knio); ``script`` is a path relative to the repository root."""

    id: int
    label: str
    script: str
    position: tuple[int, int]
    in_objects: int = 0
    in_tables: int = 0
    out_tables: int = 0
    out_images: int = 0
    out_objects: int = 0


@dataclass(frozen=True)
class PythonSourceLegacy:
    """Python Source (legacy) node: 0 inputs, one table output from the ``output_table`` global."""

    id: int
    label: str
    script: str
    position: tuple[int, int]


@dataclass(frozen=True)
class ScatterPlot:
    id: int
    label: str
    position: tuple[int, int]
    x: str
    y: str
    color: str
    title: str
    max_rows: int


@dataclass(frozen=True)
class LinePlot:
    id: int
    label: str
    position: tuple[int, int]
    x: str
    y: tuple[str, ...]
    other_columns: tuple[str, ...]  # the input's remaining columns (deselected in the dialog)
    title: str
    y_label: str


Node = PythonScript | PythonSourceLegacy | ScatterPlot | LinePlot


@dataclass(frozen=True)
class Link:
    source: int
    source_port: str  # e.g. "object 1"
    dest: int
    dest_port: str


@dataclass(frozen=True)
class Workflow:
    name: str
    annotation: str
    variables: tuple[Variable, ...]
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]


_DEFAULT = TrainConfig()
VARIABLES = (
    Variable("latent_dim", "INTEGER", _DEFAULT.latent_dim),
    Variable("beta", "DOUBLE", _DEFAULT.beta),
    Variable("epochs", "INTEGER", _DEFAULT.epochs),
    Variable("batch_size", "INTEGER", _DEFAULT.batch_size),
    Variable("learning_rate", "DOUBLE", _DEFAULT.learning_rate),
    Variable("lr_schedule", "STRING", _DEFAULT.lr_schedule),  # constant (the lab) or cosine
    Variable("seed", "INTEGER", _DEFAULT.seed),
    Variable("data_dir", "STRING", ""),  # "" = $VAE_MNIST_DIR, else the cache (downloaded)
    Variable("device", "STRING", _DEFAULT.device),
    Variable("train_limit", "INTEGER", 0),  # 0 = all training images
    Variable("eval_limit", "INTEGER", 0),  # 0 = all evaluation images
)

_LOSS_Y = ("train_loss", "test_loss")

MAIN = Workflow(
    name="VAE_MNIST",
    annotation=(
        "VAE on MNIST (vae_core). Needs a Python environment with vae_core installed "
        "(environment.yml; see docs/KNIME.md).\n"
        "Hyperparameters are workflow variables: right-click the workflow > Workflow Variables "
        "(latent_dim, beta, epochs, batch_size, learning_rate, lr_schedule, seed, data_dir, "
        "device, train_limit, eval_limit; 0 = all images).\n"
        "Batch: -workflow.variable=epochs,5,int"),
    variables=VARIABLES,
    nodes=(
        PythonScript(1, "Load MNIST", "nodes/load_mnist.py", (60, 100),
                     out_tables=2, out_images=1),
        PythonScript(2, "Train VAE", "nodes/train_vae.py", (60, 300),
                     out_tables=1, out_images=1, out_objects=1),
        LinePlot(3, "Loss per epoch", (560, 420), x="epoch", y=_LOSS_Y,
                 other_columns=tuple(c for c in LOSS_COLUMNS if c not in ("epoch", *_LOSS_Y)),
                 title="VAE loss per epoch (train and held-out)",
                 y_label="loss per image (nats)"),
        PythonScript(4, "Encode", "nodes/encode.py", (320, 60),
                     in_objects=1, in_tables=1, out_tables=1, out_images=1),
        ScatterPlot(5, "Latent space", (560, 60), x="z1", y="z2", color="digit",
                    title="Latent means of held-out images, coloured by digit", max_rows=12000),
        PythonScript(6, "Reconstruct", "nodes/reconstruct.py", (320, 200),
                     in_objects=1, in_tables=1, out_tables=1, out_images=1),
        PythonScript(7, "Generate", "nodes/generate.py", (320, 340),
                     in_objects=1, out_tables=1, out_images=1),
    ),
    links=(
        Link(2, "table 1", 3, "table 1"),
        Link(2, "object 1", 4, "object 1"),
        Link(1, "table 2", 4, "table 1"),
        Link(4, "table 1", 5, "table 1"),
        Link(2, "object 1", 6, "object 1"),
        Link(1, "table 2", 6, "table 1"),
        Link(2, "object 1", 7, "object 1"),
    ),
)

LEGACY = Workflow(
    name="VAE_MNIST_legacy",
    annotation=(
        "The lab's original approach with the legacy Python integration (Python Source node, "
        "output_table). Needs the 'KNIME Python Integration (legacy)' extension and a Python "
        "environment with vae_core installed. Hyperparameters are workflow variables."),
    variables=VARIABLES,
    nodes=(
        PythonSourceLegacy(1, "Train VAE (legacy)", "nodes/legacy_train_source.py", (60, 100)),
        LinePlot(2, "Loss per epoch", (300, 100), x="epoch", y=_LOSS_Y,
                 other_columns=tuple(c for c in LOSS_COLUMNS if c not in ("epoch", *_LOSS_Y)),
                 title="VAE loss per epoch (train and held-out)",
                 y_label="loss per image (nats)"),
    ),
    links=(Link(1, "table 1", 2, "table 1"),),
)

WORKFLOWS = (MAIN, LEGACY)

# Placeholder used in the committed sample preference file.
SAMPLE_ENV = "/path/to/miniforge3/envs/vae-mnist-knime"
