"""Textual-inversion embeddings named in prompt text, parsed the way ComfyUI's ``comfy/sd1_clip.py`` does.

ComfyUI takes ``embedding:NAME`` at the start of a prompt segment or after whitespace; weight syntax
``(embedding:NAME:1.2)`` is parsed away first; the name runs to the next whitespace, and when a file of that
name does not exist a trailing comma is dropped and tried again. The file is looked up in every embeddings
path as written, then with ``.safetensors``, ``.pt`` and ``.bin`` appended (``LOOKUP_SUFFIXES``).
"""

from __future__ import annotations

import re

IDENTIFIER = "embedding:"
LOOKUP_SUFFIXES = ("", ".safetensors", ".pt", ".bin")
# After "(", whitespace or the start; the name stops at whitespace or a closing parenthesis.
_EMBEDDING = re.compile(r"(?:(?<=[\s(])|^)embedding:([^\s()]+)")
_WEIGHT = re.compile(r":[+-]?(?:\d+\.?\d*|\.\d+)$")


def names_in(text: str) -> list[str]:
    """Return the embedding names ``text`` uses, in order, each once (weights and trailing commas removed)."""
    if IDENTIFIER not in text:  # cheap test first: most strings hold no embedding
        return []
    found: list[str] = []
    for match in _EMBEDDING.finditer(text):
        name = match.group(1)
        end = match.end()
        if end < len(text) and text[end] == ")":
            name = _WEIGHT.sub("", name)  # (embedding:name:1.2): the weight belongs to the group
        name = name.rstrip(",")
        if name and name not in found:
            found.append(name)
    return found


def candidates(name: str) -> list[str]:
    """Return the file names ComfyUI tries for embedding ``name``, in its order."""
    return [name + suffix for suffix in LOOKUP_SUFFIXES]
