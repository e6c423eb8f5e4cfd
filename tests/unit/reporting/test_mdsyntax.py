"""Markdown building blocks: an inline code span holds any value as it is, whatever backticks, spaces or
control characters it has."""

from __future__ import annotations

import re

import pytest

from comfywatchman.reporting import mdsyntax


def reference_code(value: str) -> str:
    """The code span as CommonMark needs it, worked out the long way for every value."""
    value = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", value)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", value)), default=0) + 1)
    both_spaces = value.startswith(" ") and value.endswith(" ")
    pad = " " if value.startswith("`") or value.endswith("`") or both_spaces else ""
    return f"{fence}{pad}{value}{pad}{fence}"


@pytest.mark.parametrize(
    "value",
    [
        "loras/SD1.5/fable.safetensors",
        "Portrait (tidal).json",
        " both ends ",
        " left only",
        "",
        " ",
        "a`b",
        "`start",
        "end``",
        "new\nline",
        "tab\there",
        "del\x7f",
        "nbsp\u00a0and\u2028separator",  # not printable for Python, no control character for Markdown
        "café/ñame.safetensors",
    ],
)
def test_a_code_span_is_what_the_long_way_makes_for_every_value(value: str) -> None:
    assert mdsyntax.code(value) == reference_code(value)


def test_a_plain_name_is_one_backtick_each_side() -> None:
    assert mdsyntax.code("wan/product_v6.json") == "`wan/product_v6.json`"
    assert mdsyntax.code("a`b") == "``a`b``"
