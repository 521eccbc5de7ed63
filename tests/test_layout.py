"""The module lists of README.md ("Development") and of vae_core's docstring name exactly the
modules vae_core has, so the next engineer can find their way in from either."""

import re
from pathlib import Path

import vae_core

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in (ROOT / "vae_core").glob("*.py") if p.stem != "__init__")


def test_readme_lists_every_module_once():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("\nvae_core/ "):text.index("\nnodes/ ")].splitlines()[2:]
    listed = [name for line in block
              for name in re.match(r" {2}(\S+(?: \S+)*?) {2,}\S", line).group(1).split()]
    assert sorted(listed) == MODULES and len(set(listed)) == len(listed)


def test_package_docstring_names_every_module():
    assert sorted(set(re.findall(r"``(\w+)``", vae_core.__doc__))) == MODULES
