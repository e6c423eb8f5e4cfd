"""Embedding names in prompt text, as ComfyUI's sd1_clip parses them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfywatchman.workflow.embeddings import candidates, names_in


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("embedding:EasyNegative, lowres", ["EasyNegative"]),
        ("lowres, embedding:bad_hands.pt", ["bad_hands.pt"]),
        ("(embedding:neg_v2:1.2), blurry", ["neg_v2"]),
        ("(embedding:sub/neg.safetensors:0.8)", ["sub/neg.safetensors"]),
        ("line one\nembedding:second,", ["second"]),
        ("a photo, no embedding here", []),
        ("myembedding:x", []),  # not at a word start: ComfyUI does not split there
        ("Embedding:x", []),  # the identifier is case-sensitive
        ("embedding:a embedding:a embedding:b", ["a", "b"]),
    ],
)
def test_names_in_finds_embeddings_like_comfyui(text: str, expected: list[str]) -> None:
    assert names_in(text) == expected


def test_candidates_tries_name_then_each_suffix() -> None:
    assert candidates("neg") == ["neg", "neg.safetensors", "neg.pt", "neg.bin"]


# ComfyUI's rule as one pattern with a look-behind (what names_in did before it checked the start per match).
_REFERENCE = re.compile(r"(?:(?<=[\s(])|^)embedding:([^\s()]+)")
_PIECES = ["embedding:", "embedding", ":", " ", "\t", "\n", "\u3000", "\x1c", "(", ")", ",", "a", "x.pt", ":1.2", "my"]


def _reference_names(text: str) -> list[str]:
    found: list[str] = []
    for match in _REFERENCE.finditer(text):
        name = match.group(1)
        if match.end() < len(text) and text[match.end()] == ")":
            name = re.sub(r":[+-]?(?:\d+\.?\d*|\.\d+)$", "", name)
        name = name.rstrip(",")
        if name and name not in found:
            found.append(name)
    return found


@given(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join))
def test_names_in_matches_the_look_behind_rule(text: str) -> None:
    assert names_in(text) == _reference_names(text)
