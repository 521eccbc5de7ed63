"""Training configuration: one dataclass, validated the same way for CLI flags, config files
and KNIME flow variables."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

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


def _setting(default: Any, group: str) -> Any:
    return field(default=default, metadata={"group": group})


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one VAE run. Defaults are the lab's setup."""

    latent_dim: int = _setting(2, ARCHITECTURE)
    hidden_dim: int = _setting(256, ARCHITECTURE)
    beta: float = _setting(1.0, OBJECTIVE)
    # Binarized MNIST: each training batch is re-sampled as Bernoulli(pixel) (dynamic
    # binarization) and the evaluation split is binarized once with a fixed seed, so the BCE is
    # a real Bernoulli log-likelihood and an importance-sampled bound on it is an NLL.
    binarize: bool = _setting(False, OBJECTIVE)
    epochs: int = _setting(30, OPTIMISATION)
    batch_size: int = _setting(128, OPTIMISATION)
    learning_rate: float = _setting(1e-3, OPTIMISATION)
    # "constant": the lab's fixed Adam rate. "cosine": the rate falls from learning_rate to 0
    # along a half cosine over all steps of the run (same cost, better optimum at a fixed budget).
    lr_schedule: str = _setting("constant", OPTIMISATION)
    # "fp32": the lab. "bf16": mixed precision (bf16 matrix products; fp32 weights, optimizer
    # state, loss and KL) on hardware with native bf16 only. "auto": bf16 where that is native
    # and faster (CPUs with bf16 instructions), else fp32 (train.resolve_precision). Part of
    # the recipe: a resume keeps it.
    precision: str = _setting("fp32", OPTIMISATION)
    seed: int = _setting(0, SEED)
    train_fraction: float = _setting(0.8, DATA)
    # "holdout": 20% of the 60k train file (the lab); "test": the 10k file
    eval_set: str = _setting("holdout", DATA)
    train_limit: int | None = _setting(None, DATA)  # only the first N training images
    eval_limit: int | None = _setting(None, DATA)  # only the first N evaluation images
    device: str = _setting("auto", RUNTIME)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _coerce(f.name, getattr(self, f.name)))
        self._check()

    def _check(self) -> None:
        _require(self.latent_dim >= 1, "latent_dim", self.latent_dim, "an integer >= 1")
        _require(self.hidden_dim >= 1, "hidden_dim", self.hidden_dim, "an integer >= 1")
        _require(self.beta >= 0, "beta", self.beta, "a number >= 0")
        _require(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "a number > 0")
        _require(0 < self.train_fraction < 1, "train_fraction", self.train_fraction,
                 "a number strictly between 0 and 1")
        _require(self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule,
                 f"one of {LR_SCHEDULES}")
        _require(self.eval_set in EVAL_SETS, "eval_set", self.eval_set, f"one of {EVAL_SETS}")
        _require(self.device in DEVICES, "device", self.device, f"one of {DEVICES}")
        _require(self.precision in PRECISIONS, "precision", self.precision,
                 f"one of {PRECISIONS}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            _require(value is None or value >= 1, name, value, "empty or an integer >= 1")

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


def settings(*groups: str) -> tuple[str, ...]:
    """Names of the settings in ``groups``, in declaration order."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown setting group(s) {sorted(unknown)}")
    return tuple(f.name for f in fields(TrainConfig) if f.metadata["group"] in groups)


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


_INT_FIELDS = {"latent_dim", "hidden_dim", "epochs", "batch_size", "seed",
               "train_limit", "eval_limit"}
_FLOAT_FIELDS = {"beta", "learning_rate", "train_fraction"}
_BOOL_FIELDS = {"binarize"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


def _coerce(name: str, value: Any) -> Any:
    """Accept what CLI, JSON/TOML and KNIME deliver; reject anything ambiguous with a clear error."""
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        if value is None:
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{name} must be true or false, got {value!r}.")
    if name in _INT_FIELDS:
        if value is None or value == "":
            if name in ("train_limit", "eval_limit"):
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
    if name in _FLOAT_FIELDS:
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


def _require(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"Invalid {name}={value!r}: it must be {expected}.")


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
