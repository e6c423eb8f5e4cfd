"""Target paths: hostile names refused or sanitised, nothing outside the model folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfywatchman.download.paths import (
    UnsafeTarget,
    content_disposition_name,
    open_nofollow,
    sanitize_filename,
    target_for,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("model.safetensors", "model.safetensors"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\system32\\evil.dll", "evil.dll"),
        ("/abs/path/x.ckpt", "x.ckpt"),
        (".bashrc", "bashrc"),
        ("a\x00b\nc.pt", "a_b_c.pt"),
        ('we<ird>:"|?*.bin', "we_ird______.bin"),
        ("CON", None),
        ("nul.safetensors", None),
        ("...", None),
        ("", None),
        ("trailing. . ", "trailing"),
        ("e\u0301.pt", "\u00e9.pt"),
        ("x" * 300 + ".safetensors", "x" * 243 + ".safetensors"),
    ],
)
def test_sanitize_filename(raw: str, clean: str | None) -> None:
    assert sanitize_filename(raw) == clean


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="addDetail_v10.safetensors"', "addDetail_v10.safetensors"),
        ("attachment; filename=plain.ckpt", "plain.ckpt"),
        ("attachment; filename*=UTF-8''na%C3%AFve%20model.safetensors", "naïve model.safetensors"),
        ('attachment; filename="../../../.ssh/authorized_keys"', "authorized_keys"),
        ("attachment; filename=\"x.pt\"; filename*=UTF-8''..%2F..%2Fy.pt", "y.pt"),
        ("inline", None),
        (None, None),
    ],
)
def test_content_disposition_name(header: str | None, name: str | None) -> None:
    assert content_disposition_name(header) == name


@pytest.mark.parametrize(
    "name",
    [
        "../x.safetensors",
        "sub/../../x.safetensors",
        "/etc/x.safetensors",
        "C:\\x.safetensors",
        "sub/",
        "a\x00b.safetensors",
        "https://evil.example/x.safetensors",
        "sub/.hidden.safetensors",
        "sub/con/x.pt",
        "x.safetensors?download=1",
    ],
)
def test_target_for_refuses_names_that_could_leave_or_not_resolve(name: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeTarget):
        target_for([str(tmp_path)], name)


def test_target_keeps_the_subfolder_as_written(tmp_path: Path) -> None:
    target = target_for([str(tmp_path / "loras"), "/elsewhere"], "SDXL\\detail v2.safetensors")
    assert target.path == tmp_path / "loras" / "SDXL" / "detail v2.safetensors"
    assert target.part_path("abc").name == "detail v2.safetensors.abc.part"


def test_no_folder_of_the_type_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="no folder"):
        target_for([], "x.safetensors")


def test_open_nofollow_refuses_a_symlink_and_a_fifo(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(UnsafeTarget):
        open_nofollow(link, os.O_RDWR | os.O_CREAT)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeTarget):
        open_nofollow(fifo, os.O_RDWR | os.O_CREAT)
