"""Run the VAE workflow headless with KNIME's batch executor (KNIME_FORMAT.md §6).

    scripts/knime-batch --knime /opt/knime_5.5/knime --var epochs=5 --var data_dir=/data/mnist \\
        --preferences knime_workflow/vae_mnist_local.epf

builds and runs::

    knime -nosplash -consoleLog --launcher.suppressErrors
          -application org.knime.product.KNIME_BATCH_APPLICATION -data <workspace>
          -workflowFile=<abs .knwf> -reset -nosave -failonloaderror
          [-preferences=<abs .epf>] -workflow.variable=data_dir,/data/mnist,String ...
          -option=2,epochs-14/integer,5,int ... [-vmargs -Xmx4g]

Each ``--var`` goes to its setting's one home in that workflow: a workflow variable
(``-workflow.variable=name,value,type``, typed by its declaration in ``spec.py``), or a field of
a component's dialog (``-option=<component id>,<field>-<node id>/<key>,value,type``: the batch
executor sets the component's dialog value, which its Configuration node pushes; KNIME 5.5's
BatchExecutor reaches no node inside a component, and a workflow variable never changes a
Configuration node's value). KNIME is found from ``--knime``, else ``$KNIME_HOME``, else
``knime`` on PATH.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vae_core.config import Setting

from . import spec
from .component import Component, ConfigurationNode, fields, option_key
from .spec import DEFAULT_MODEL_FILE

APPLICATION = "org.knime.product.KNIME_BATCH_APPLICATION"
BATCH_TYPES = {"INTEGER": "int", "DOUBLE": "double", "STRING": "String"}
EXIT_CODES = {
    0: "success: every node executed",
    2: "bad or missing parameters",
    3: "the workflow could not be loaded (missing extension, future version, locked, ...)",
    4: "a node failed; see the console log above (or <workspace>/.metadata/knime/knime.log)",
    5: "the KNIME Batch Executor extension is not installed (KNIME 5.9+)",
}
DEFAULT_WORKFLOW = Path(__file__).resolve().parent / f"{spec.MAIN.name}.knwf"


class BatchError(Exception):
    """A problem with the wrapper's arguments or with finding KNIME (one clear message)."""


def find_knime(knime: str | None = None, env: dict[str, str] | None = None) -> Path:
    """The KNIME launcher: ``knime`` argument, else $KNIME_HOME/knime, else ``knime`` on PATH."""
    env = os.environ if env is None else env
    names = ("knime.exe", "knime") if os.name == "nt" else ("knime",)
    candidates: list[Path] = []
    if knime:
        path = Path(knime).expanduser()
        candidates += [path / n for n in names] if path.is_dir() else [path]
    elif env.get("KNIME_HOME"):
        candidates += [Path(env["KNIME_HOME"]).expanduser() / n for n in names]
    else:
        found = shutil.which("knime", path=env.get("PATH"))
        candidates += [Path(found)] if found else []
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    tried = ", ".join(str(c) for c in candidates) or "'knime' on PATH"
    raise BatchError(f"KNIME not found (tried {tried}). Pass --knime /path/to/knime (the "
                     "launcher in the KNIME installation folder) or set KNIME_HOME to that folder.")


def declared_workflow(workflow: Path) -> spec.Workflow:
    """The workflow's declaration, found by its name (VAE_MNIST_apply.knwf, a folder
    VAE_MNIST_legacy, ...); any other workflow is taken for the main one."""
    name = workflow.stem if workflow.suffix == ".knwf" else workflow.name
    return next((wf for wf in spec.WORKFLOWS if wf.name == name), spec.MAIN)


def declared_variables(workflow: Path) -> tuple[spec.Variable, ...]:
    return declared_workflow(workflow).variables


def _uses(wf: spec.Workflow, script: str) -> bool:
    return any(getattr(node, "script", None) == script for node in wf.nodes)


def kept_model(workflow: Path, values: dict[str, str], model_file: Path | None) -> dict[str, str]:
    """``values`` with an absolute model_path where a run of a .knwf needs one.

    KNIME unzips a ``-workflowFile`` into a temporary folder and deletes it at exit
    (BatchExecutor.loadWorkflow, FileUtil.createTempDir): a model saved into that workflow's data
    area is gone after the run, and a relative path read from there finds nothing. So a .knwf run
    keeps its model at ``model_file`` (default ./vae_mnist_model.pt, the file the apply workflow's
    run reads by default), and a relative model_path is refused. A workflow folder keeps its data
    area: nothing changes there."""
    wf = declared_workflow(workflow)
    if "model_path" not in {v.name for v in wf.variables}:
        if model_file is not None:
            raise BatchError(f"{wf.name} neither saves nor loads a model: drop --model-file.")
        return values
    if "model_path" in values and model_file is not None:
        raise BatchError("Give the model's file once: --model-file or --var model_path, not both.")
    if workflow.suffix != ".knwf":
        return values if model_file is None else {**values, "model_path": str(model_file.resolve())}
    given = values.get("model_path")
    if given is not None and not Path(given).expanduser().is_absolute():
        raise BatchError(f"model_path {given!r} is relative: a .knwf batch run unpacks the workflow "
                         "into a temporary folder that KNIME deletes at exit, so the model would "
                         "be lost or not found. Give an absolute path, or use --model-file.")
    path = Path(given).expanduser() if given else (model_file or Path(DEFAULT_MODEL_FILE)).resolve()
    if _uses(wf, "nodes/load_model.py") and not path.exists():
        raise BatchError(f"No model at {path} for {wf.name}'s Load Model. Run "
                         f"{spec.MAIN.name}.knwf first with the same --model-file (it keeps its "
                         "model there), or point --model-file at a saved model or run folder.")
    return {**values, "model_path": str(path)}


def dialog_fields(wf: spec.Workflow) -> dict[str, tuple[Component, ConfigurationNode]]:
    """The dialog fields of the workflow's components, by setting name."""
    return {f.setting.name: (node, f) for node in wf.nodes if isinstance(node, Component)
            for f in fields(node)}


_YES, _NO = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def dialog_text(setting: Setting, value: str) -> str:
    """The text of a field's value as BatchExecutor parses it for the field's type
    (Integer.parseInt, Double.parseDouble, Boolean.parseBoolean, a choice verbatim); a value
    the field would refuse is refused here, with what it must be."""
    text, ok = value.strip(), True
    try:
        if setting.choices:
            text = text.lower()
            ok = text in setting.choices
        elif setting.type is bool:
            ok = text.lower() in _YES | _NO
            text = "true" if text.lower() in _YES else "false"
        elif setting.type is int:
            number = int(text or "0") if setting.optional else int(text)
            ok = (setting.optional and number == 0) or setting.allows(number)
            text = str(number)
        elif setting.type is float:
            real = float(text)
            ok = math.isfinite(real) and setting.allows(real)
            text = repr(real)
        else:
            text = value
    except ValueError:
        ok = False
    if not ok:
        rule = ("0 (no limit) or " + setting.expected().removeprefix("empty or ")
                if setting.optional else "true or false" if setting.type is bool
                else setting.expected())
        raise BatchError(f"{setting.name} must be {rule}, got {value!r}.")
    return text


def option_args(values: dict[str, str], wf: spec.Workflow) -> list[str]:
    """``-option=<component id>,<field>-<node id>/<key>,value,type`` per dialog field: the
    value is everything between the option's name and its LAST comma (BatchExecutor.
    splitOption), so it is never quoted."""
    known = dialog_fields(wf)
    args = []
    for name, value in values.items():
        component, field = known[name]
        key, kind = option_key(field)
        args.append(f"-option={component.id},{key},{dialog_text(field.setting, value)},{kind}")
    return args


def variable_args(values: dict[str, str], variables=spec.VARIABLES) -> list[str]:
    """``-workflow.variable=name,value,type`` for each value, typed by its declaration."""
    declared = {v.name: v for v in variables}
    args = []
    for name, value in values.items():
        if name not in declared:
            raise BatchError(f"Unknown workflow variable {name!r}. Known: "
                             f"{', '.join(declared)}.")
        kind = declared[name].kind
        parse = {"INTEGER": int, "DOUBLE": float}.get(kind, str)
        try:
            parse(value)
        except ValueError:
            expected = "an integer" if kind == "INTEGER" else "a number"
            raise BatchError(f"Workflow variable {name} must be {expected}, got {value!r}.") \
                from None
        if '"' in value:
            raise BatchError(f"The value of {name} must not contain a double quote.")
        text = f'"{value}"' if "," in value else value  # KNIME tokenises with quote support
        args.append(f"-workflow.variable={name},{text},{BATCH_TYPES[kind]}")
    return args


def build_command(knime: Path, workflow: Path, values: dict[str, str], *,
                  preferences: Path | None = None, workspace: Path | None = None,
                  vmargs: list[str] = (), model_file: Path | None = None) -> list[str]:
    """The full KNIME batch command line (a list, no shell quoting needed)."""
    workflow = Path(workflow).resolve()
    if not workflow.exists():
        raise BatchError(f"Workflow {workflow} does not exist.")
    target = (f"-workflowDir={workflow}" if workflow.is_dir()
              else f"-workflowFile={workflow}")
    cmd = [str(knime), "-nosplash", "-consoleLog", "--launcher.suppressErrors",
           "-application", APPLICATION]
    if workspace is not None:
        cmd += ["-data", str(Path(workspace).resolve())]
    cmd += [target, "-reset", "-nosave", "-failonloaderror"]
    if preferences is not None:
        preferences = Path(preferences).resolve()
        if not preferences.is_file():
            raise BatchError(f"Preference file {preferences} does not exist. Write one with "
                             "python -m knime_workflow.build --epf <conda env folder>.")
        cmd.append(f"-preferences={preferences}")
    wf = declared_workflow(workflow)
    in_dialog = {k: v for k, v in values.items() if k in dialog_fields(wf)}
    as_variables = {k: v for k, v in values.items() if k not in in_dialog}
    unknown = [k for k in as_variables if k not in {v.name for v in wf.variables}]
    if unknown and dialog_fields(wf):
        raise BatchError(f"Unknown setting {unknown[0]!r} for {wf.name}. Workflow variables: "
                         f"{', '.join(v.name for v in wf.variables)}"
                         + (f"; dialog fields: {', '.join(dialog_fields(wf))}"
                            if dialog_fields(wf) else "") + ".")
    options = option_args(in_dialog, wf)  # mistyped values are refused first
    variable_args(as_variables, wf.variables)
    cmd += variable_args(kept_model(workflow, as_variables, model_file), wf.variables) + options
    if vmargs:
        cmd += ["-vmargs", *vmargs]  # must come last
    return cmd


def _parse_var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise BatchError(f"--var expects NAME=VALUE, got {text!r}.")
    return name.strip(), value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="knime-batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--knime", help="KNIME launcher or installation folder "
                        "(default $KNIME_HOME, else knime on PATH)")
    parser.add_argument("--workflow", default=str(DEFAULT_WORKFLOW),
                        help="a .knwf file or workflow folder (default: the VAE_MNIST.knwf)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="set a workflow variable, e.g. --var epochs=5 (repeatable)")
    parser.add_argument("--preferences", help="an .epf preference file (Python environment)")
    parser.add_argument("--workspace", help="KNIME workspace folder (default: a new temp folder)")
    parser.add_argument("--xmx", help="Java heap, e.g. 4g (passed as -vmargs -Xmx4g)")
    parser.add_argument("--model-file", help="where a .knwf run keeps the model it saves, or "
                        f"finds the model it loads (default ./{DEFAULT_MODEL_FILE}): KNIME deletes "
                        "the unpacked .knwf, data area included, at exit")
    parser.add_argument("--dry-run", action="store_true", help="print the command, do not run")
    args = parser.parse_args(argv)
    try:
        values = dict(_parse_var(v) for v in args.var)
        knime = Path(args.knime or "knime") if args.dry_run else find_knime(args.knime)
        if args.workspace:
            workspace = Path(args.workspace)
        elif args.dry_run:  # do not create anything for a dry run
            workspace = Path(tempfile.gettempdir()) / "knime-batch-ws-XXXX"
        else:
            workspace = Path(tempfile.mkdtemp(prefix="knime-batch-ws-"))
        cmd = build_command(knime, Path(args.workflow), values,
                            preferences=Path(args.preferences) if args.preferences else None,
                            workspace=workspace, vmargs=[f"-Xmx{args.xmx}"] if args.xmx else [],
                            model_file=Path(args.model_file) if args.model_file else None)
    except BatchError as exc:
        print(f"knime-batch: error: {exc}", file=sys.stderr)
        return 2
    print(" ".join(cmd), file=sys.stderr)
    if args.dry_run:
        return 0
    code = subprocess.call(cmd)
    print(f"knime-batch: KNIME exited with {code}: "
          f"{EXIT_CODES.get(code, 'unknown exit code')}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
