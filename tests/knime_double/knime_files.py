"""Reading KNIME's XMLConfig files in tests, independently of the project's builder.

TEST-ONLY. Own implementation of KNIME's unescape rule (every ``%%ddddd`` is one UTF-16 code
unit), so a symmetric bug in the builder's escaping cannot hide.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

NS = "{http://www.knime.org/2008/09/XMLConfig}"
ENTRY_TYPES = {"xstring", "xint", "xdouble", "xfloat", "xlong", "xshort", "xbyte", "xchar",
               "xboolean", "xpassword", "xtransientstring"}


def knime_unescape(text: str) -> str:
    parts = re.split(r"%%(\d{5})", text)
    units = bytearray()
    for i, part in enumerate(parts):
        units += int(part).to_bytes(2, "little") if i % 2 else part.encode("utf-16-le",
                                                                           "surrogatepass")
    return units.decode("utf-16-le", "surrogatepass")


def parse(path: Path | str, data: bytes | None = None) -> dict[str, Any]:
    """XMLConfig → nested dicts (insertion order kept); an entry becomes (type, value|None)."""
    def walk(elem: ET.Element) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for child in elem:
            key = knime_unescape(child.attrib["key"])
            assert key not in out, f"duplicate key {key!r} in {path}"
            if child.tag == NS + "config":
                assert set(child.attrib) == {"key"}, f"{path}: config attributes {child.attrib}"
                out[key] = walk(child)
            elif child.tag == NS + "entry":
                assert child.attrib["type"] in ENTRY_TYPES, f"{path}: type {child.attrib}"
                assert len(child) == 0
                null = child.attrib.get("isnull") == "true"
                out[key] = (child.attrib["type"],
                            None if null else knime_unescape(child.attrib["value"]))
            else:
                raise AssertionError(f"{path}: {child.tag} is not a valid tag name")
        return out

    root = ET.fromstring(data) if data is not None else ET.parse(path).getroot()
    assert root.tag == NS + "config", f"{path}: root is {root.tag}"
    return walk(root)


def value(cfg: dict, key: str) -> Any:
    return cfg[key][1]


def array_values(cfg: dict) -> list[str]:
    return [cfg[str(i)][1] for i in range(int(value(cfg, "array-size")))]


def shape(cfg: dict, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """The key tree with entry types, in order; arrays reduce to their element type."""
    out = []
    for key, item in cfg.items():
        path = (*prefix, key)
        if isinstance(item, dict):
            if "array-size" in item:
                kinds = {item[k][0] for k in item if k != "array-size"}
                out.append((path, "array of " + ("/".join(sorted(kinds)) or "any")))
            else:
                out.append((path, "config"))
                out += shape(item, path)
        else:
            out.append((path, item[0]))
    return out
