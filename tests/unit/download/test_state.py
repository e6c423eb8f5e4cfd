"""downloads.json: ids that survive a re-generated queue, schema-checked atomic updates."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfywatchman.download.state import DownloadState, new_record, task_id
from comfywatchman.errors import ArtifactError


def test_task_id_is_stable_and_case_insensitive_on_the_name() -> None:
    one = task_id("loras", "SDXL/Detail.safetensors", "https://civitai.com/api/download/models/1")
    assert one == task_id("loras", "sdxl\\detail.safetensors", "https://civitai.com/api/download/models/1")
    assert len(one) == 12 and one != task_id("loras", "SDXL/Detail.safetensors", "https://civitai.com/x")
    assert one != task_id("checkpoints", "SDXL/Detail.safetensors", "https://civitai.com/api/download/models/1")


def test_update_writes_a_valid_file_and_refuses_an_invalid_record(tmp_path: Path) -> None:
    state = DownloadState(tmp_path)
    assert state.read() == {}
    ident = task_id("loras", "x.safetensors", "https://h/x")
    state.update({ident: lambda old: new_record(ident, "x.safetensors", "loras", "https://h/x")})
    assert state.read()[ident]["approved_at"] is None
    with pytest.raises(ArtifactError):
        state.update({ident: lambda old: {**(old or {}), "approved_by": "somebody"}})
    assert state.read()[ident]["approved_by"] is None  # the failed write left the file as it was
