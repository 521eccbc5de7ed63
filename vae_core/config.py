"""Training configuration: one dataclass, validated the same way for CLI flags, config files
and KNIME flow variables.

Every training setting is declared once, as a field of :class:`TrainConfig` whose metadata is
a :class:`Setting` (the field's annotation is its type). The checks, the command-line flags,
the KNIME workflow variables and the resume / sweep / repeat rules are all derived from that
table (:data:`SETTINGS`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import tomllib
import types
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from vae_core.errors import ConfigError

EVAL_SETS = ("holdout", "test")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "auto")


# What each setting is. Every rule about settings is derived from this one table: what a resume
# must match, what models trained together in a sweep share, what a repeated recipe is.
ARCHITECTURE = "architecture"  # the network's shape
OBJECTIVE = "objective"  # what the loss is
OPTIMISATION = "optimisation"  # how the loss is minimised
DATA = "data"  # which images, split how
SEED = "seed"  # every random choice (split, initial weights, batch order, noise)
RUNTIME = "runtime"  # where it runs; never changes a result beyond float rounding
GROUPS = (ARCHITECTURE, OBJECTIVE, OPTIMISATION, DATA, SEED, RUNTIME)


@dataclass(frozen=True)
class Setting:
    """One row of the settings table. ``name``, ``type`` (int, float, bool or str),
    ``optional`` (None allowed: "not limited") and ``flag`` are filled in from the field by
    :func:`setting_table`; the rest is declared with the field."""

    group: str
    help: str  # one line: --help and the docs say this
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None  # value >= minimum
    above: float | None = None  # value > above
    below: float | None = None  # value < below
    knime: bool = False  # a workflow variable of the KNIME workflows
    flag: str = ""  # the command-line flag; "" = --name-with-dashes
    name: str = ""
    type: type = str
    optional: bool = False

    def expected(self) -> str:
        """What a valid value is, for the error message (``"an integer >= 1"``)."""
        if self.choices:
            return f"one of {self.choices}"
        what = "an integer" if self.type is int else "a number"
        if self.above is not None and self.below is not None:
            bounds = [f"strictly between {self.above:g} and {self.below:g}"]
        else:
            bounds = [f"{op} {bound:g}" for op, bound in
                      ((">=", self.minimum), (">", self.above), ("<", self.below))
                      if bound is not None]
        text = " ".join([what, " and ".join(bounds)]) if bounds else what
        return f"empty or {text}" if self.optional else text

    def allows(self, value: Any) -> bool:
        """Whether a coerced value is within the choices and bounds."""
        if value is None:
            return self.optional
        return ((not self.choices or value in self.choices)
                and (self.minimum is None or value >= self.minimum)
                and (self.above is None or value > self.above)
                and (self.below is None or value < self.below))


def _setting(default: Any, group: str, help: str, **rules: Any) -> Any:
    """A TrainConfig field and its row of the settings table."""
    row = Setting(group, help, default, **rules)
    return field(default=default, metadata={"setting": row})


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one VAE run. Defaults are the lab's setup."""

    latent_dim: int = _setting(2, ARCHITECTURE, "size of the latent space", minimum=1,
                               knime=True)
    hidden_dim: int = _setting(256, ARCHITECTURE, "width of the hidden layer", minimum=1,
                               knime=True)
    beta: float = _setting(1.0, OBJECTIVE, "weight of the KL term", minimum=0, knime=True)
    # Binarized MNIST: each training batch is re-sampled as Bernoulli(pixel) (dynamic
    # binarization) and the evaluation split is binarized once with a fixed seed, so the BCE is
    # a real Bernoulli log-likelihood and an importance-sampled bound on it is an NLL.
    binarize: bool = _setting(False, OBJECTIVE, "binarized MNIST: Bernoulli-resample each "
                              "training batch, evaluate on a fixed binarized held-out set",
                              knime=True)
    epochs: int = _setting(30, OPTIMISATION, "training epochs", minimum=1, knime=True)
    batch_size: int = _setting(128, OPTIMISATION, "mini-batch size", minimum=1, knime=True)
    learning_rate: float = _setting(1e-3, OPTIMISATION, "Adam learning rate, the peak rate "
                                    "under the cosine schedule", above=0, flag="--lr",
                                    knime=True)
    # "constant": the lab's fixed Adam rate. "cosine": the rate falls from learning_rate to 0
    # along a half cosine over all steps of the run (same cost, better optimum at a fixed budget).
    lr_schedule: str = _setting("constant", OPTIMISATION, "constant: the lab; cosine: decay "
                                "from the learning rate to 0 over the run",
                                choices=LR_SCHEDULES, knime=True)
    # "fp32": the lab. "bf16": mixed precision (bf16 matrix products; fp32 weights, optimizer
    # state, loss and KL) on hardware with native bf16 only. "auto": bf16 where that is native
    # and faster (CPUs with bf16 instructions), else fp32 (train.resolve_precision). Part of
    # the recipe: a resume keeps it.
    precision: str = _setting("fp32", OPTIMISATION, "fp32: the lab; bf16: mixed precision, "
                              "only where the hardware computes bf16 natively; auto: bf16 on "
                              "CPUs with bf16 instructions, else fp32",
                              choices=PRECISIONS, knime=True)
    seed: int = _setting(0, SEED, "random seed for split, initialisation and sampling",
                         minimum=0, knime=True)
    train_fraction: float = _setting(0.8, DATA, "share of the 60k training file used for "
                                     "training in the holdout protocol", above=0, below=1)
    eval_set: str = _setting("holdout", DATA, "holdout: 20% of the training file (the lab); "
                             "test: the official 10k test set", choices=EVAL_SETS, knime=True)
    train_limit: int | None = _setting(None, DATA, "use only the first N training images",
                                       minimum=1, knime=True)
    eval_limit: int | None = _setting(None, DATA, "use only the first N evaluation images",
                                      minimum=1, knime=True)
    device: str = _setting("auto", RUNTIME, "auto: a CUDA GPU, else Apple's MPS, else the CPU",
                           choices=DEVICES, knime=True)

    def __post_init__(self) -> None:
        table = setting_table(type(self))
        for s in table:
            object.__setattr__(self, s.name, _coerce(s, getattr(self, s.name)))
        for s in table:
            value = getattr(self, s.name)
            if not s.allows(value):
                raise ConfigError(f"Invalid {s.name}={value!r}: it must be {s.expected()}.")

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "configuration") -> TrainConfig:
        """Build from a mapping; unknown keys are an error (a typo must not be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"Unknown option(s) {', '.join(map(repr, unknown))} in {source}. "
                f"Valid options are: {', '.join(sorted(known))}."
            )
        return cls(**values)


@functools.cache
def setting_table(config_class: type = TrainConfig) -> tuple[Setting, ...]:
    """The rows of ``config_class``'s settings, in declaration order, with name, type and flag
    filled in from each field."""
    hints = get_type_hints(config_class)
    rows = []
    for f in fields(config_class):
        hint = hints[f.name]
        kinds = [a for a in get_args(hint) if a is not type(None)]
        optional = isinstance(hint, types.UnionType) and len(kinds) < len(get_args(hint))
        row: Setting = f.metadata["setting"]
        rows.append(dataclasses.replace(row, name=f.name, type=kinds[0] if optional else hint,
                                        optional=optional,
                                        flag=row.flag or "--" + f.name.replace("_", "-")))
    return tuple(rows)


# The settings table: every training setting, once.
SETTINGS = setting_table(TrainConfig)

SCORING = "scoring"  # how a trained model scores images; never part of a training


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of the Score node and ``vae-mnist score`` (a table of their own: they change no
    trained model, so no run, resume or sweep rule sees them)."""

    unusual_quantile: float = _setting(0.99, SCORING, "an image is unusual when its neg-ELBO is "
                                       "above this quantile of the model's held-out scores",
                                       above=0, below=1, knime=True)
    score_iw_k: int = _setting(0, SCORING, "importance samples k of the L_k score "
                               "neg_log_lik_k (0: not computed)", minimum=0, knime=True)
    unusual_rows: int = _setting(64, SCORING, "the most unusual images shown with input, "
                                 "reconstruction and error map", minimum=0, knime=True)

    __post_init__ = TrainConfig.__post_init__
    from_dict = classmethod(TrainConfig.from_dict.__func__)


SCORE_SETTINGS = setting_table(ScoreConfig)


def settings(*groups: str) -> tuple[str, ...]:
    """Names of the settings in ``groups``, in declaration order."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown setting group(s) {sorted(unknown)}")
    return tuple(s.name for s in SETTINGS if s.group in groups)


# Everything a trained model depends on (all but the runtime).
RESULT_SETTINGS = settings(ARCHITECTURE, OBJECTIVE, OPTIMISATION, DATA, SEED)
# What ``--resume`` may change: where it runs, and how many epochs in all (a longer run continues
# the same trajectory; not under a learning-rate schedule, whose every rate depends on it).
RESUME_MAY_CHANGE = ("epochs", *settings(RUNTIME))
RESUME_MUST_MATCH = tuple(s for s in RESULT_SETTINGS if s not in RESUME_MAY_CHANGE)
# A sweep varies architecture size and β over a grid; all other result settings are shared.
SWEEP_VARIES = ("latent_dim", "beta")
SWEEP_SHARED = tuple(s for s in RESULT_SETTINGS if s not in SWEEP_VARIES)
# A repeated recipe varies the latent size and the seed.
REPEAT_VARIES = ("latent_dim", "seed")
RECIPE_SETTINGS = tuple(s for s in RESULT_SETTINGS if s not in REPEAT_VARIES)


def epochs_problem(saved: TrainConfig, epochs: int, epochs_done: int) -> str | None:
    """Why a resume of ``saved`` (``epochs_done`` trained) cannot train to ``epochs``; None if
    it can. The one home of the rule behind ``RESUME_MAY_CHANGE``'s "epochs"."""
    if epochs != saved.epochs and saved.lr_schedule != "constant":
        return (f"under lr_schedule={saved.lr_schedule!r} the learning rate of every step "
                f"depends on the number of epochs, so it must stay {saved.epochs}")
    if epochs < epochs_done:
        return f"it has already trained {epochs_done} epochs, so give at least {epochs_done}"
    return None


def differences(saved: TrainConfig | dict, wanted: TrainConfig | dict, names: Sequence[str]
                ) -> list[str]:
    """``"name: was X, now Y"`` for every named setting that differs (settings missing from an
    older dict read as their defaults, which is what was run)."""
    a = _as_dict(saved)
    b = _as_dict(wanted)
    return [f"{n}: {a[n]!r} before, {b[n]!r} now" for n in names if a[n] != b[n]]


def _as_dict(config: TrainConfig | dict) -> dict[str, Any]:
    if isinstance(config, TrainConfig):
        return config.to_dict()
    return {**TrainConfig().to_dict(), **config}


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def _coerce(setting: Setting, value: Any) -> Any:
    """Accept what CLI, JSON/TOML and KNIME deliver; reject anything ambiguous with a clear error."""
    name = setting.name
    if setting.type is bool:
        if isinstance(value, bool):
            return value
        if value is None:
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{name} must be true or false, got {value!r}.")
    if setting.type is int:
        if value is None or value == "":
            if setting.optional:
                return None
            raise ConfigError(f"{name} must be an integer, but it is empty. Set {name} to a whole "
                              "number.")
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got the boolean {value}.")
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{name} must be an integer, got {value!r}. Set {name} to a whole number.")
    if setting.optional and (value is None or value == ""):
        return None
    if setting.type is float:
        if isinstance(value, bool) or value is None:
            raise ConfigError(f"{name} must be a number, got {value!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}.") from None
        if not math.isfinite(number):
            raise ConfigError(f"{name} must be a finite number, got {value!r}.")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}.")
    return value.strip().lower()


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a plain dict (validated later by TrainConfig)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist. Check the path.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}.") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Config file {path} is not valid {path.suffix[1:] or 'JSON'}: {exc}. "
                          "Use JSON (.json) or TOML (.toml).") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of option names to values.")
    return data
