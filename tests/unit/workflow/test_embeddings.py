"""Embedding names in prompt text, as ComfyUI's sd1_clip parses them."""

from __future__ import annotations

import pytest

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
