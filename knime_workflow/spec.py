"""Declarative description of the KNIME workflows; ``build.py`` turns it into files.

Ports are named ``"<kind> <n>"`` (kind = table | image | object, n counted from 1 within the
kind, as the Python Script node's port groups count them); the builder maps them to KNIME's
port indices (0 is always the implicit flow-variable port).
"""

from __future__ import annotations

from dataclasses import dataclass

from vae_core.config import SCORE_SETTINGS, SETTINGS, SWEEP_VARIES, Setting
from vae_core.evaluation.run_metrics import DEFAULT_IW_IMAGES, DEFAULT_IW_K
from vae_core.experiments.sweep import DEFAULT_BETAS, DEFAULT_LATENTS
from vae_core.nodes.experiments import DEFAULT_SWEEP_DIR
from vae_core.nodes.score import IMAGE_COLUMNS
from vae_core.nodes.steps import (
    APPLY_MODEL_PATH,
    DEFAULT_MODEL_FILE,
    LOSS_TABLE_SETTINGS,
    workflow_variables,
)
from vae_core.outputs.tables import LOSS_COLUMNS

from .component import OUTPUT, Component, ComponentPort, fields, option_key


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
    """KNIME's Scatter Plot; the axis titles may be taken from flow variables (pushed by an
    upstream node) instead of the column names."""

    id: int
    label: str
    position: tuple[int, int]
    x: str
    y: str
    color: str
    title: str
    max_rows: int
    x_title_variable: str | None = None
    y_title_variable: str | None = None


@dataclass(frozen=True)
class TableView:
    """KNIME's Table View showing ``columns`` (others hidden); image cells render as images."""

    id: int
    label: str
    position: tuple[int, int]
    columns: tuple[str, ...]
    title: str


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


Node = PythonScript | PythonSourceLegacy | ScatterPlot | LinePlot | TableView | Component


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


# Settings of a training run (Load MNIST + Train VAE, and the legacy workflow): those the
# settings table exposes to KNIME, with their types and defaults, and the MNIST folder.
TRAINING_VARIABLES = (
    *(Variable(*row) for row in workflow_variables()),
    Variable("data_dir", "STRING", ""),  # "" = $VAE_MNIST_DIR, else the cache (downloaded)
)
VARIABLES = (
    *TRAINING_VARIABLES,
    Variable("model_path", "STRING", DEFAULT_MODEL_FILE),  # relative: in the data area
    Variable("overwrite_model", "INTEGER", 0),  # 1 = Save Model may replace a different model
)
_BY_NAME = {v.name: v for v in VARIABLES}
APPLY_VARIABLES = (
    _BY_NAME["seed"], _BY_NAME["data_dir"], _BY_NAME["device"],
    Variable("train_limit", "INTEGER", 1000),  # only the 64 samples use training images here
    _BY_NAME["eval_limit"],
    Variable("eval_set", "STRING", "test"),  # the 10k test file: images no model trained on
    Variable("model_path", "STRING", APPLY_MODEL_PATH),  # the main workflow's saved model
    *(Variable(*row) for row in workflow_variables(SCORE_SETTINGS)),  # the Score node's
)

_LOSS_Y = ("train_loss", "test_loss")
_LOSS_OTHER = (*(c for c in LOSS_COLUMNS if c not in ("epoch", *_LOSS_Y)),
               *LOSS_TABLE_SETTINGS, "train_images", "heldout_images")


def _loss_plot(node_id: int, position: tuple[int, int]) -> LinePlot:
    return LinePlot(node_id, "Loss per epoch", position, x="epoch", y=_LOSS_Y,
                    other_columns=_LOSS_OTHER,
                    title="VAE loss per epoch (train and held-out)",
                    y_label="loss per image (nats)")


def _latent_plot(node_id: int, position: tuple[int, int]) -> ScatterPlot:
    return ScatterPlot(node_id, "Latent space", position, x="z1", y="z2", color="digit",
                       title="Latent means of held-out images, coloured by digit",
                       max_rows=12000)


def _explorer_plot(node_id: int, position: tuple[int, int]) -> ScatterPlot:
    """Encode's explorer table: z1/z2, or the first two principal components for more latent
    dimensions; Encode pushes the axis titles that say which."""
    return ScatterPlot(node_id, "Latent explorer", position, x="plot_x", y="plot_y",
                       color="digit", title="Latent explorer: select points to see their digits",
                       max_rows=12000, x_title_variable="latent_x_title",
                       y_title_variable="latent_y_title")


_EXPLORER_COLUMNS = ("image", "digit", "plot_x", "plot_y", "image_id")
_RECON_COLUMNS = ("image", "kind", "digit", "bce", "image_id")
_GENERATED_COLUMNS = ("image", "sample_id", "z1", "z2")


_BUNDLE_NOTE = ("The workflow carries its own vae_core (in its data folder): the Python "
                "environment needs only the packages of environment.yml (see docs/KNIME.md).")

def _model_use(at: dict[str, tuple[int, int]], images: int) -> tuple[tuple, tuple, tuple, tuple]:
    """The nodes that use a model (node 2's object 1) on MNIST's held-out images (node
    ``images``'s table 2), in both the main and the apply workflow: (nodes, links) before and
    after the main workflow's Save Model, placed at ``at``."""
    nodes_a = (
        PythonScript(4, "Encode", "nodes/encode.py", at["encode"],
                     in_objects=1, in_tables=1, out_tables=2, out_images=1),
        _latent_plot(5, at["latent"]),
        PythonScript(6, "Reconstruct", "nodes/reconstruct.py", at["reconstruct"],
                     in_objects=1, in_tables=1, out_tables=1, out_images=1),
        PythonScript(7, "Generate", "nodes/generate.py", at["generate"],
                     in_objects=1, out_tables=1, out_images=1),
        PythonScript(8, "Decode", "nodes/decode.py", at["decode"],
                     in_objects=1, in_tables=1, out_tables=1, out_images=1),
    )
    nodes_b = (
        _explorer_plot(10, at["explorer"]),
        TableView(11, "Latent explorer digits", at["explorer_digits"], _EXPLORER_COLUMNS,
                  "Digits of the latent explorer's points"),
        TableView(12, "Originals and reconstructions", at["recon_view"], _RECON_COLUMNS,
                  "Originals beside their reconstructions"),
        TableView(13, "Generated digits", at["generated_view"], _GENERATED_COLUMNS,
                  "Digits decoded from z ~ N(0, I)"),
    )
    links_a = (
        Link(2, "object 1", 4, "object 1"),
        Link(images, "table 2", 4, "table 1"),
        Link(4, "table 1", 5, "table 1"),
        Link(2, "object 1", 6, "object 1"),
        Link(images, "table 2", 6, "table 1"),
        Link(2, "object 1", 7, "object 1"),
        Link(2, "object 1", 8, "object 1"),
        Link(4, "table 2", 8, "table 1"),
    )
    links_b = (
        Link(4, "table 2", 10, "table 1"),
        Link(4, "table 2", 11, "table 1"),
        Link(6, "table 1", 12, "table 1"),
        Link(7, "table 1", 13, "table 1"),
    )
    return nodes_a, links_a, nodes_b, links_b


_MAIN_USE = _model_use({"encode": (460, 60), "latent": (700, 0), "reconstruct": (460, 260),
                        "generate": (460, 400), "decode": (700, 200), "explorer": (700, 100),
                        "explorer_digits": (900, 100), "recon_view": (700, 300),
                        "generated_view": (700, 420)}, images=2)
_APPLY_USE = _model_use({"encode": (300, 60), "latent": (540, 0), "reconstruct": (300, 200),
                         "generate": (300, 340), "decode": (540, 200), "explorer": (540, 100),
                         "explorer_digits": (740, 100), "recon_view": (540, 300),
                         "generated_view": (540, 420)}, images=1)

def train_vae(table: tuple[Setting, ...] = SETTINGS) -> Component:
    """The Train VAE component: Load MNIST and Train VAE, with one dialog field per row of the
    settings ``table`` that KNIME exposes (a new row is a new field, nothing else to edit)."""
    return Component(
        2, "Train VAE", (160, 300),
        description=(
            "Loads MNIST and trains a VAE on it. Double-click for the settings: each field is "
            "one training setting (type, default, range or choices and help from the project's "
            "settings table), used for loading (split, limits, binarization) and training alike. "
            "The workflow variable data_dir says where MNIST is (empty: $VAE_MNIST_DIR, else "
            "downloaded). Passes on every setting and the last epoch's losses (vae_train_loss, "
            "vae_heldout_loss, ...) as flow variables."),
        settings=tuple(s for s in table if s.knime),
        nodes=(PythonScript(3, "Load MNIST", "nodes/load_mnist.py", (300, 0),
                            out_tables=3, out_images=1),
               PythonScript(4, "Train VAE", "nodes/train_vae.py", (500, 100),
                            in_tables=2, out_tables=1, out_images=1, out_objects=1)),
        links=(Link(3, "table 1", 4, "table 1"), Link(3, "table 2", 4, "table 2"),
               Link(4, "table 1", OUTPUT, "table 1"), Link(4, "image 1", OUTPUT, "image 1"),
               Link(4, "object 1", OUTPUT, "object 1"), Link(3, "table 2", OUTPUT, "table 2"),
               Link(3, "table 3", OUTPUT, "table 3")),
        out_ports=(
            ComponentPort("table", "Loss per epoch", "One row per epoch: training and held-out "
                          "loss, reconstruction and KL (nats per image), with the settings and "
                          "image counts in every row."),
            ComponentPort("image", "Loss curve", "The loss per epoch as a PNG."),
            ComponentPort("object", "Model", "The trained model (weights, settings, history), for "
                          "Encode, Reconstruct, Generate, Decode and Save Model."),
            ComponentPort("table", "Held-out images", "The images the held-out loss is computed "
                          "on: image_id, source, label, digit, pixel_0..pixel_783 (0-255)."),
            ComponentPort("table", "Sample images", "64 random training images, with an image "
                          "cell each.")))


def main_workflow(table: tuple[Setting, ...] = SETTINGS) -> Workflow:
    """VAE_MNIST: the Train VAE component's dialog holds every training setting of ``table``;
    the workflow variables only say where files are."""
    train = train_vae(table)
    variables = tuple(v for v in VARIABLES if v.name not in {s.name for s in train.settings})
    return Workflow(
        name="VAE_MNIST",
        annotation=(
            "VAE on MNIST. " + _BUNDLE_NOTE + "\n"
            "Train VAE (a component: Load MNIST -> Train VAE) -> Encode / Reconstruct / Generate "
            "/ Decode, with Table Views of the digits and a latent explorer; Save Model writes the "
            "model to model_path (default: this workflow's data folder, where the workflow "
            "VAE_MNIST_apply beside it reads it).\n"
            "Training settings: double-click Train VAE. Workflow variables (right-click the "
            f"workflow > Workflow Variables): {', '.join(v.name for v in variables)}.\n"
            "Batch: -option=2,{},5,int (knime-batch --var epochs=5)".format(
                next(option_key(f)[0] for f in fields(train) if f.label == "epochs"))),
        variables=variables,
        nodes=(train, _loss_plot(3, (700, 600)), *_MAIN_USE[0],
               PythonScript(9, "Save Model", "nodes/save_model.py", (460, 600),
                            in_objects=1, out_tables=1),
               *_MAIN_USE[2],
               TableView(14, "Sample images", (260, 140), ("image", "digit", "image_id"),
                         "Random training images")),
        links=(Link(2, "table 1", 3, "table 1"), *_MAIN_USE[1], Link(2, "object 1", 9, "object 1"),
               *_MAIN_USE[3], Link(2, "table 3", 14, "table 1")))


TRAIN_VAE = train_vae()
MAIN = main_workflow()

APPLY = Workflow(
    name="VAE_MNIST_apply",
    annotation=(
        "Apply a saved VAE, no training. " + _BUNDLE_NOTE + "\n"
        "Load Model reads model_path (default: the model the workflow VAE_MNIST beside this one "
        "saved; a `vae-mnist run` folder or its checkpoint.pt works too) -> Encode / "
        "Reconstruct / Generate / Decode on MNIST's test images (eval_set), with Table Views "
        "of the digits and a latent explorer; Score says how unusual each test image is "
        "(percentile against the model's held-out scores, is_unusual above unusual_quantile) "
        "and shows the most unusual digits.\n"
        "Settings are workflow variables (model_path, data_dir, device, seed, eval_set, "
        "eval_limit, train_limit, unusual_quantile, score_iw_k, unusual_rows)."),
    variables=APPLY_VARIABLES,
    nodes=(
        PythonScript(1, "Load MNIST", "nodes/load_mnist.py", (60, 200),
                     out_tables=3, out_images=1),
        PythonScript(2, "Load Model", "nodes/load_model.py", (60, 380),
                     out_tables=1, out_objects=1),
        *_APPLY_USE[0],
        *_APPLY_USE[2],
        PythonScript(14, "Score", "nodes/score.py", (300, 560),
                     in_objects=1, in_tables=1, out_tables=2, out_images=1),
        TableView(15, "Most unusual digits", (540, 520),
                  (*IMAGE_COLUMNS, "digit", "neg_elbo", "percentile", "row", "image_id"),
                  "The test images the model finds most unusual: input, reconstruction, error"),
        ScatterPlot(16, "Scores", (540, 620), x="recon", y="kl", color="digit",
                    title="Score of each test image: reconstruction against KL (nats), by "
                          "digit; neg_elbo = recon + kl", max_rows=12000),
    ),
    links=(
        *_APPLY_USE[1],
        *_APPLY_USE[3],
        Link(2, "object 1", 14, "object 1"),
        Link(1, "table 2", 14, "table 1"),
        Link(14, "table 2", 15, "table 1"),
        Link(14, "table 1", 16, "table 1"),
    ),
)

LEGACY = Workflow(
    name="VAE_MNIST_legacy",
    annotation=(
        "The lab's original approach with the legacy Python integration (Python Source node, "
        "output_table). Needs the 'KNIME Python Integration (legacy)' extension. "
        + _BUNDLE_NOTE + " Hyperparameters are workflow variables."),
    variables=TRAINING_VARIABLES,
    nodes=(
        PythonSourceLegacy(1, "Train VAE (legacy)", "nodes/legacy_train_source.py", (60, 100)),
        _loss_plot(2, (300, 100)),
    ),
    links=(Link(1, "table 1", 2, "table 1"),),
)

EXPERIMENT_VARIABLES = (
    *(v for v in TRAINING_VARIABLES if v.name not in SWEEP_VARIES),  # shared by the grid
    Variable("latent_dims", "STRING", ",".join(str(z) for z in DEFAULT_LATENTS)),
    Variable("betas", "STRING", ",".join(f"{b:g}" for b in DEFAULT_BETAS)),
    Variable("iw_k", "INTEGER", DEFAULT_IW_K),  # importance samples of the bound L_k
    Variable("iw_images", "INTEGER", DEFAULT_IW_IMAGES),  # held-out images L_k is computed on
    Variable("sweep_dir", "STRING", DEFAULT_SWEEP_DIR),  # relative: in the data area
)

EXPERIMENTS = Workflow(
    name="VAE_MNIST_experiments",
    annotation=(
        "The lab's experiments: every latent size x beta of the grid trained and evaluated "
        "(the project's sweep), the lab's claims judged, the trade-off plotted. "
        + _BUNDLE_NOTE + "\n"
        "Settings are workflow variables: latent_dims and betas (comma-separated lists), "
        "epochs, seed, data_dir, device, ... Finished configurations are kept in sweep_dir "
        "(default: this workflow's data folder), so executing again after a cancel or a crash "
        "continues where it stopped. With the defaults (16 configurations, 30 epochs each) it "
        "takes hours on a laptop CPU: try latent_dims 2,20, betas 1,4 and epochs 5 first."),
    variables=EXPERIMENT_VARIABLES,
    nodes=(
        PythonScript(1, "Run experiments", "nodes/experiments.py", (60, 200),
                     out_tables=2, out_images=3),
        ScatterPlot(2, "Reconstruction vs KL", (320, 100), x="kl", y="recon", color="latent",
                    title="Held-out reconstruction BCE against KL, every latent size and beta",
                    max_rows=1000),
        TableView(3, "Claims", (320, 300), ("kind", "statement", "verdict", "numbers", "note"),
                  "The lab's claims and the targets, with the numbers that decide them"),
        TableView(4, "Experiments", (320, 200),
                  ("config", "latent_dim", "beta", "recon", "kl", "neg_elbo", "iw_bound",
                   "active_units", "knn_vae", "knn_pca", "train_seconds"),
                  "One row per configuration"),
    ),
    links=(
        Link(1, "table 1", 2, "table 1"),
        Link(1, "table 2", 3, "table 1"),
        Link(1, "table 1", 4, "table 1"),
    ),
)

WORKFLOWS = (MAIN, APPLY, EXPERIMENTS, LEGACY)

# Placeholder used in the committed sample preference file.
SAMPLE_ENV = "/path/to/miniforge3/envs/vae-mnist-knime"
