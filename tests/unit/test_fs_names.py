"""File names that are not UTF-8 text: told apart, and shown with their odd bytes escaped."""

from __future__ import annotations

import os

from comfywatchman import fs_names


def test_a_name_from_bytes_that_are_not_utf8_is_not_text_and_is_shown_escaped() -> None:
    odd = os.fsdecode(b"bad\xff name.safetensors")  # as os.scandir gives it on Linux
    assert not fs_names.is_text(odd)
    assert fs_names.is_text("plain.safetensors") and fs_names.is_text("caf\u00e9 \u6a21\u578b.safetensors")
    assert fs_names.shown("/m/" + odd) == "/m/bad\\xff name.safetensors"
    assert fs_names.shown("/m/caf\u00e9") == "/m/caf\u00e9"
    assert fs_names.finding("/m/" + odd).startswith("/m/bad\\xff name.safetensors: its name is not UTF-8 text")
    fs_names.finding("/m/" + odd).encode("utf-8")  # text any log or artifact can hold
