"""Markdown building blocks that stay valid CommonMark/GFM whatever text they hold: code spans, escaped
text, fenced blocks and list items indented to their own marker's width."""

from __future__ import annotations

import re
from collections.abc import Iterable

# ASCII punctuation that can start or end Markdown syntax inline (CommonMark lets any of it be escaped).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#!&])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BACKTICKS = re.compile(r"`+")


def _visible(text: str) -> str:
    """Return ``text`` on one line: control characters (a newline would end the block) as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def text(value: str) -> str:
    """Return ``value`` as literal Markdown text: special characters backslash-escaped, on one line."""
    return _SPECIAL.sub(r"\\\1", _visible(value))


def code(value: str) -> str:
    """Return ``value`` as an inline code span, whatever backticks it holds (the fence is one longer than its
    longest run; a space pads a value that starts or ends with a backtick)."""
    if "`" not in value and value.isprintable():
        # The common case (a file or workflow name, thousands per page): no control character, no backtick.
        pad = " " if value.startswith(" ") and value.endswith(" ") else ""
        return f"`{pad}{value}{pad}`"
    value = _visible(value)
    longest = max((len(run) for run in _BACKTICKS.findall(value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or (value.startswith(" ") and value.endswith(" ")) else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def link(label: str, url: str | None) -> str:
    """Return ``[label](<url>)`` with the label escaped, or the escaped label alone when the URL cannot be
    written as a link destination (none, or holding spaces, angle brackets or control characters)."""
    if not url or re.search(r"[\s<>\x00-\x1f]", url):
        return text(label)
    return f"[{text(label)}](<{url}>)"


def fence(lines: Iterable[str], indent: int, info: str = "sh") -> list[str]:
    """Return a fenced code block of ``lines`` indented by ``indent`` spaces (to sit inside a list item).

    The fence is longer than any backtick run in the lines, so no line can close it early.
    """
    body = list(lines)
    longest = max((len(run) for line in body for run in _BACKTICKS.findall(line)), default=0)
    marker = "`" * max(3, longest + 1)
    pad = " " * indent
    return [f"{pad}{marker}{info}", *(pad + line.replace("\n", "\n" + pad) for line in body), f"{pad}{marker}"]


def number(value: int) -> str:
    """Return ``value`` with thousands separators (2,000)."""
    return f"{value:,}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """Return ``"1 workflow"`` / ``"2,000 workflows"``."""
    return f"{number(count)} {word if count == 1 else (many or word + 's')}"
