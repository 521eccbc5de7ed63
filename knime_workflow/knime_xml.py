"""KNIME's "XMLConfig" format (workflow.knime, settings.xml): a tiny tree model and a writer.

Only two element names exist: ``<config key>`` and ``<entry key type value [isnull]>``.
String values get KNIME's own escape first (control characters, UTF-16 units above 0xD7FF and
a ``%`` followed by ``%`` become ``%%`` + 5 decimal digits; newline = ``%%00010``), then normal
XML attribute escaping. See KNIME_FORMAT.md §2 and §3.6.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
ROOT_ATTRS = ('xmlns="http://www.knime.org/2008/09/XMLConfig" '
              'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
              'xsi:schemaLocation="http://www.knime.org/2008/09/XMLConfig '
              'http://www.knime.org/XMLConfig_2008_09.xsd"')
INDENT = "    "


@dataclass
class Entry:
    key: str
    type: str  # xstring, xint, xdouble, xboolean, ...
    value: str | None  # None = isnull="true"


@dataclass
class Config:
    key: str
    children: list[Entry | Config] = field(default_factory=list)


# ----------------------------------------------------------------------------- builders
def string(key: str, value: str | None) -> Entry:
    return Entry(key, "xstring", value)


def integer(key: str, value: int) -> Entry:
    return Entry(key, "xint", str(int(value)))


def boolean(key: str, value: bool) -> Entry:
    return Entry(key, "xboolean", "true" if value else "false")


def double(key: str, value: float) -> Entry:
    return Entry(key, "xdouble", repr(float(value)))


def config(key: str, *children: Entry | Config) -> Config:
    return Config(key, list(children))


def array(key: str, kind: str, values: Iterable[str]) -> Config:
    """KNIME's array layout: ``array-size`` then entries "0", "1", ..."""
    values = list(values)
    return Config(key, [integer("array-size", len(values))]
                  + [Entry(str(i), kind, v) for i, v in enumerate(values)])


# ----------------------------------------------------------------------------- encoding
def knime_escape(text: str) -> str:
    """KNIME's ``XMLUtils.escape``: what Java does on the string's UTF-16 code units."""
    raw = text.encode("utf-16-le", "surrogatepass")
    units = [int.from_bytes(raw[i:i + 2], "little") for i in range(0, len(raw), 2)]
    out: list[str] = []
    for pos, unit in enumerate(units):
        percent_pair = unit == 0x25 and pos + 1 < len(units) and units[pos + 1] == 0x25
        if unit < 32 or unit > 0xD7FF or percent_pair:
            out.append(f"%%{unit:05d}")
        else:
            out.append(chr(unit))
    return "".join(out)


def xml_attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _attr(text: str) -> str:
    return xml_attr(knime_escape(text))


def _lines(node: Entry | Config, depth: int) -> list[str]:
    pad = INDENT * depth
    if isinstance(node, Entry):
        if node.value is None:
            return [f'{pad}<entry key="{_attr(node.key)}" type="{node.type}" isnull="true" '
                    'value=""/>']
        return [f'{pad}<entry key="{_attr(node.key)}" type="{node.type}" '
                f'value="{_attr(node.value)}"/>']
    if not node.children:
        return [f'{pad}<config key="{_attr(node.key)}"/>']
    lines = [f'{pad}<config key="{_attr(node.key)}">']
    for child in node.children:
        lines += _lines(child, depth + 1)
    return lines + [f"{pad}</config>"]


def render(root: Config) -> bytes:
    """The whole file, as KNIME writes it (UTF-8, 4-space indent)."""
    lines = [f'<config {ROOT_ATTRS} key="{_attr(root.key)}">']
    for child in root.children:
        lines += _lines(child, 1)
    lines.append("</config>")
    return (HEADER + "\n".join(lines) + "\n").encode("utf-8")
