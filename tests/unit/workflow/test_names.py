"""Names that cannot be files inside a model folder are INVALID_FILENAME, never looked up."""

from __future__ import annotations

import pytest

from comfywatchman.workflow.names import invalid_reason, lookup_key


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "SDXL/../../x.safetensors",
        "..\\..\\x.ckpt",
        "/abs/model.safetensors",
        "C:\\models\\x.safetensors",
        "https://example.com/x.safetensors",
        "x.safetensors?download=1",
        "bad\0name.safetensors",
        "tab\tname.ckpt",
        "   ",
    ],
)
def test_invalid_reason_refuses_names_that_escape_or_are_not_files(name: str) -> None:
    assert invalid_reason(name) is not None


@pytest.mark.parametrize("name", ["model.safetensors", "SDXL\\sub\\model.safetensors", "a b (1).ckpt", "é.pt"])
def test_invalid_reason_accepts_relative_names(name: str) -> None:
    assert invalid_reason(name) is None


def test_lookup_key_treats_backslash_and_slash_alike() -> None:
    assert lookup_key("SDXL\\Model.safetensors") == lookup_key("sdxl/model.safetensors")
