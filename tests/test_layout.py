"""README.md's layout ("Development") and vae_core's docstring name exactly the subpackages and
modules vae_core has, so the next engineer can find their way in from either."""

import re
from pathlib import Path

import vae_core

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vae_core"
MODULES = sorted(p.relative_to(PACKAGE).with_suffix("").as_posix() for p in PACKAGE.rglob("*.py")
                 if p.name != "__init__.py" and "__pycache__" not in p.parts)
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def readme_layout() -> list[str]:
    """Module paths (``training/loop``) listed in README's block under ``vae_core/``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("\nvae_core/ "):text.index("\nnodes/            the KNIME")]
    listed, package = [], ""
    for line in block.splitlines()[2:]:
        sub = re.match(r"  (\w+)/ {2,}\S", line)
        if sub:
            package = sub.group(1) + "/"
            continue
        names = re.match(r" {2,4}(\S+(?: \S+)*?) {2,}\S", line)
        if names:
            nested = line.startswith("    ")
            listed += [(package if nested else "") + n for n in names.group(1).split()]
    return listed


def test_readme_lists_every_module_once_in_its_subpackage():
    listed = readme_layout()
    assert sorted(listed) == MODULES and len(set(listed)) == len(listed)


def test_package_docstring_names_every_subpackage_and_module():
    named = set(re.findall(r"``(\w+)``", vae_core.__doc__)) | set(
        re.findall(r"\(([\w, ]+)", vae_core.__doc__)[0].split(", "))
    words = set(re.findall(r"\w+", vae_core.__doc__))
    assert set(SUBPACKAGES) <= named
    assert {m.rsplit("/", 1)[-1] for m in MODULES} <= words


def test_no_module_is_over_400_lines():
    """Our modules: hidden folders (.venv, .venv-knime, caches) and build outputs are not."""
    ours = [p for p in ROOT.glob("*/**/*.py") if "/data/vae_core/" not in p.as_posix()
            and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    assert any(p.name == "cli.py" for p in ours)
    long = {p.relative_to(ROOT).as_posix(): n for p in ours
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}
