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
# The name stops at whitespace or a parenthesis. Where it may start (after "(", whitespace or the start) is
# checked on each match: a look-behind in the pattern made the engine try it at every character of a prompt.
_EMBEDDING = re.compile(r"embedding:([^\s()]+)")
_WEIGHT = re.compile(r":[+-]?(?:\d+\.?\d*|\.\d+)$")


def names_in(text: str) -> list[str]:
    """Return the embedding names ``text`` uses, in order, each once (weights and trailing commas removed)."""
    if IDENTIFIER not in text:  # cheap test first: most strings hold no embedding
        return []
    found: list[str] = []
    for match in _EMBEDDING.finditer(text):
        start = match.start()
        # Not at a word start: ComfyUI does not split there. (A match skipped so hides no other start: its name
        # holds no whitespace and no "(" that one could follow.)
        if start and not (text[start - 1].isspace() or text[start - 1] == "("):
            continue
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
