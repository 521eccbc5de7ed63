"""The settings table (vae_core.config.SETTINGS) is the one home of every training setting: the
checks, the command-line flags, the KNIME workflow variables and the hand-written tables of the
docs must agree with it."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vae_core import cli, config
from vae_core.config import ARCHITECTURE, SETTINGS, TrainConfig, setting_table
from vae_core.errors import ConfigError
from vae_core.nodes import steps

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # knime_workflow/ is not an installed package

BY_NAME = {s.name: s for s in SETTINGS}
# KNIME's workflow-variable types, written out here (not taken from steps) so a wrong mapping
# fails: the batch executor has int, double and String only, so yes/no is an int 0 / 1.
KNIME_TYPE = {int: "INTEGER", float: "DOUBLE", str: "STRING", bool: "INTEGER"}


def _markdown_table(text: str, header: str) -> list[list[str]]:
    """The rows (cells stripped) of the first markdown table whose header line is ``header``."""
    lines = text[text.index(header):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


# ----------------------------------------------------------------------------- the table
def test_the_table_is_the_config_fields_in_order():
    assert [s.name for s in SETTINGS] == list(TrainConfig().to_dict())
    assert {s.group for s in SETTINGS} <= set(config.GROUPS)
    assert all(s.help and "\n" not in s.help for s in SETTINGS)
    assert TrainConfig().to_dict() == {s.name: s.default for s in SETTINGS}
    assert (BY_NAME["train_limit"].type, BY_NAME["train_limit"].optional) == (int, True)
    assert (BY_NAME["binarize"].type, BY_NAME["learning_rate"].flag) == (bool, "--lr")


@pytest.mark.parametrize("values, message", [
    ({"latent_dim": 0}, "Invalid latent_dim=0: it must be an integer >= 1."),
    ({"beta": -1}, "Invalid beta=-1.0: it must be a number >= 0."),
    ({"seed": -1}, "Invalid seed=-1: it must be an integer >= 0."),
    ({"learning_rate": 0}, "Invalid learning_rate=0.0: it must be a number > 0."),
    ({"train_fraction": 1}, "Invalid train_fraction=1.0: it must be a number strictly between "
                            "0 and 1."),
    ({"eval_limit": 0}, "Invalid eval_limit=0: it must be empty or an integer >= 1."),
    ({"device": "tpu"}, "Invalid device='tpu': it must be one of ('auto', 'cpu', 'cuda', "
                        "'mps')."),
    ({"binarize": "maybe"}, "binarize must be true or false, got 'maybe'."),
    ({"hidden_dim": ""}, "hidden_dim must be an integer, but it is empty."),
])
def test_checks_derived_from_the_table_keep_their_messages(values, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**values)
    assert str(err.value).startswith(message)


# ----------------------------------------------------------------------------- command line
def test_every_setting_is_a_flag_with_the_tables_help_and_no_retyped_default():
    parser = _run_parser()
    actions = {a.dest: a for a in parser._actions if a.dest in BY_NAME}
    assert set(actions) == set(BY_NAME)
    for name, action in actions.items():
        s = BY_NAME[name]
        assert action.option_strings == [s.flag]
        assert action.default is None  # "not given": the default comes from the table
        assert action.help.replace("%%", "%").startswith(s.help)
        if s.type is bool:
            assert action.const is True and action.nargs == 0
        else:
            assert action.type is s.type and tuple(action.choices or ()) == s.choices
    assert actions["latent_dim"].help.endswith("(default 2)")
    assert actions["learning_rate"].help.endswith("(default 0.001)")
    assert "(default" not in actions["train_limit"].help  # no limit unless given
    args = parser.parse_args(["--hidden-dim", "64", "--binarize", "--lr", "0.01"])
    assert cli._config(args) == TrainConfig(hidden_dim=64, binarize=True, learning_rate=0.01)
    assert cli._config(parser.parse_args([])) == TrainConfig()


def test_readme_option_table_lists_every_setting_with_its_default():
    rows = _markdown_table((REPO / "README.md").read_text(encoding="utf-8"),
                           "| option | default | meaning |")
    listed = {flag: default for cells in rows
              for flag in re.findall(r"`(-[-\w]+)", cells[0]) for default in [cells[1]]}
    known = {o for a in _run_parser()._actions for o in a.option_strings}
    assert set(listed) <= known, "README lists a flag `vae-mnist run` does not have"
    for s in SETTINGS:
        assert s.flag in listed, f"README's option table lacks {s.flag} ({s.name})"
        text = listed[s.flag]
        if s.default is None:
            assert text == "all", s.flag
        elif s.type is bool:
            assert text == "", s.flag  # a switch: off unless given
        elif s.type in (int, float):
            assert float(text) == s.default, f"{s.flag}: README says {text}, the table {s.default}"
        else:
            assert text == s.default, s.flag
    assert {s.flag for s in SETTINGS if s.knime} <= set(listed)


# ----------------------------------------------------------------------------- KNIME
def test_workflow_variables_are_the_tables_knime_settings():
    from knime_workflow import spec

    declared = {v.name: v for v in spec.VARIABLES}
    assert tuple(declared) == steps.FLOW_VARIABLES
    for s in SETTINGS:
        if not s.knime:
            assert s.name not in declared, s.name
            continue
        var = declared[s.name]
        assert var.kind == KNIME_TYPE[s.type], s.name
        # the declared default, read as the nodes read it, is the table's default
        got = steps.params_from_flow_variables({s.name: var.value}).config
        assert getattr(got, s.name) == s.default, s.name
    assert (declared["hidden_dim"].value, declared["binarize"].value) == (256, 0)
    shared = {v.name for v in spec.EXPERIMENT_VARIABLES}
    assert {"hidden_dim", "binarize", "epochs"} <= shared
    assert not shared & set(config.SWEEP_VARIES)  # the grid sets those


def test_hidden_dim_and_binarize_are_read_from_flow_variables():
    c = steps.params_from_flow_variables({"hidden_dim": 64, "binarize": 1}).config
    assert (c.hidden_dim, c.binarize) == (64, True)
    assert steps.params_from_flow_variables({"binarize": "0"}).config.binarize is False
    with pytest.raises(ConfigError, match="binarize must be true or false, got 2") as err:
        steps.params_from_flow_variables({"binarize": 2})
    assert "-workflow.variable" in str(err.value)
    with pytest.raises(ConfigError, match="hidden_dim=0"):
        steps.params_from_flow_variables({"hidden_dim": 0})


def test_knime_doc_lists_the_main_workflows_variables():
    from knime_workflow import spec

    text = (REPO / "docs" / "KNIME.md").read_text(encoding="utf-8")
    rows = _markdown_table(text[text.index("The workflow variables of `VAE_MNIST` are"):],
                           "| variable | type | default | meaning |")
    doc_type = {"int": "INTEGER", "double": "DOUBLE", "String": "STRING"}
    documented = [(r[0].strip("`"), doc_type[r[1]], r[2]) for r in rows]
    assert [d[0] for d in documented] == [v.name for v in spec.MAIN.variables]
    for (name, kind, default), var in zip(documented, spec.MAIN.variables, strict=True):
        assert kind == var.kind, name
        parse = {"INTEGER": int, "DOUBLE": float}.get(kind, lambda t: "" if t == '""' else t)
        assert parse(default) == var.value, name


# ----------------------------------------------------------------------------- a new setting
@dataclass(frozen=True)
class _WithDropout(TrainConfig):
    """TrainConfig with one made-up setting, declared the way every real one is."""

    dropout: float = config._setting(0.0, ARCHITECTURE, "dropout rate of the hidden layer",
                                     minimum=0, below=1, knime=True)


def test_a_setting_added_to_the_table_gets_checks_a_flag_and_a_workflow_variable():
    table = setting_table(_WithDropout)
    new = table[-1]
    assert (new.name, new.type, new.flag, new.group) == ("dropout", float, "--dropout",
                                                         ARCHITECTURE)
    assert _WithDropout(dropout="0.25").dropout == 0.25
    with pytest.raises(ConfigError, match=re.escape("Invalid dropout=1.0: it must be a number "
                                                    ">= 0 and < 1.")):
        _WithDropout(dropout=1)
    with pytest.raises(ConfigError, match="dropout must be a number"):
        _WithDropout(dropout="x")

    parser = argparse.ArgumentParser()
    cli.add_setting_flags(parser, table)
    args = parser.parse_args(["--dropout", "0.5", "--epochs", "3"])
    assert (args.dropout, args.epochs, args.latent_dim) == (0.5, 3, None)
    dropout_help = next(a.help for a in parser._actions if a.dest == "dropout")
    assert dropout_help == "dropout rate of the hidden layer (default 0.0)"

    variables = steps.workflow_variables(table)
    assert variables[-1] == ("dropout", "DOUBLE", 0.0)
    assert variables[:-1] == steps.workflow_variables()
