"""The downloader against local servers serving real bytes: verified, resumable, atomic, each host's rules."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from comfywatchman.config import Secret
from comfywatchman.download import fetch
from comfywatchman.download.fetch import DownloadFailed, Settings
from comfywatchman.download.paths import Target, UnsafeTarget, target_for
from tests.fakes import wait_until
from tests.fakes.byte_server import ByteServer
from tests.fakes.civitai_server import FakeCivitai
from tests.fakes.hf_server import FakeHub, Repo
from tests.helpers.model_files import safetensors_bytes, sha

MIB = 1024 * 1024
DATA = safetensors_bytes(3 * MIB + 123)


def _target(models: Path, name: str = "detail/add_detail.safetensors") -> Target:
    return target_for([str(models / "loras")], name)


def _leftovers(models: Path) -> list[str]:
    return sorted(str(p.relative_to(models)) for p in models.rglob("*") if p.is_file())


def test_a_file_lands_verified_in_its_subfolder(server: ByteServer, make_downloader: Any, models: Path) -> None:
    url = server.add("/f", DATA, filename="served-name.safetensors")
    got = make_downloader().fetch(url, _target(models), sha(DATA).upper(), len(DATA))
    final = models / "loras" / "detail" / "add_detail.safetensors"
    assert got.status == "done" and got.path == final and got.verified == "sha256"
    assert final.read_bytes() == DATA
    assert got.served_as == "served-name.safetensors"
    assert _leftovers(models) == ["loras/detail/add_detail.safetensors"]


def test_a_cut_is_resumed_with_range_in_the_same_run(
    server: ByteServer, make_downloader: Any, models: Path, sleeps: list[float]
) -> None:
    url = server.add("/f", DATA)
    server.fail("/f", ("cut", MIB))
    got = make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert got.status == "done" and (models / "loras/detail/add_detail.safetensors").read_bytes() == DATA
    assert [r.headers.get("Range") for r in server.requests] == [None, f"bytes={MIB}-"]
    assert got.transferred == len(DATA) and sleeps == [1.0]


def test_a_cut_on_the_last_try_keeps_the_part_and_the_next_run_resumes(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA)
    server.fail("/f", ("cut", 2 * MIB))
    one_try = Settings(min_free_bytes=0, max_attempts=1, read_timeout=5.0)
    with pytest.raises(DownloadFailed) as failed:
        make_downloader(settings=one_try).fetch(url, _target(models), sha(DATA), len(DATA))
    assert not failed.value.final and "next run resumes" in failed.value.reason
    part = _target(models).part_path(sha(DATA)[:12])
    assert part.stat().st_size == 2 * MIB and not _target(models).path.exists()
    got = make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert got.resumed_from == 2 * MIB and got.transferred == len(DATA) - 2 * MIB
    assert server.requests[-1].headers["Range"] == f"bytes={2 * MIB}-"
    assert _target(models).path.read_bytes() == DATA and not part.exists()


def test_a_server_that_ignores_range_makes_it_start_over(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA)
    part = _target(models).part_path(sha(DATA)[:12])
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage!" * 1000)  # a part whose bytes are not the file's: the restart must drop them
    server.fail("/f", "ignore_range")
    got = make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert server.requests[0].headers["Range"] == "bytes=8000-"
    assert got.status == "done" and _target(models).path.read_bytes() == DATA


def test_416_on_a_complete_part_verifies_and_places_it(server: ByteServer, make_downloader: Any, models: Path) -> None:
    url = server.add("/f", DATA)
    part = _target(models).part_path(sha(DATA)[:12])
    part.parent.mkdir(parents=True)
    part.write_bytes(DATA)  # killed after the last byte, before the rename
    got = make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert server.requests[0].headers["Range"] == f"bytes={len(DATA)}-"
    assert got.status == "done" and got.transferred == 0 and _target(models).path.read_bytes() == DATA


@pytest.mark.parametrize(
    ("served", "size", "words"),
    [
        (safetensors_bytes(3 * MIB + 123, seed=2), len(DATA), "SHA256 mismatch"),
        (DATA[:-10], len(DATA), "size mismatch"),
    ],
)
def test_a_mismatch_deletes_the_part_and_fails_for_good(
    server: ByteServer, make_downloader: Any, models: Path, served: bytes, size: int, words: str
) -> None:
    url = server.add("/f", served)
    with pytest.raises(DownloadFailed) as failed:
        make_downloader().fetch(url, _target(models), sha(DATA), size)
    assert failed.value.final and words in failed.value.reason
    assert _leftovers(models) == []


def test_a_truncated_safetensors_without_a_published_hash_is_refused(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA[: 2 * MIB])
    with pytest.raises(DownloadFailed) as failed:
        make_downloader().fetch(url, _target(models), None, None)
    assert "truncated" in failed.value.reason and _leftovers(models) == []


def test_not_enough_disk_space_is_refused_before_any_request(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA)
    downloader = make_downloader(settings=Settings(min_free_bytes=MIB), disk_free=lambda _p: len(DATA))
    with pytest.raises(DownloadFailed) as failed:
        downloader.fetch(url, _target(models), sha(DATA), len(DATA))
    assert "not enough disk space" in failed.value.reason and server.count == 0
    assert _leftovers(models) == []


def test_not_enough_space_for_the_announced_size_is_refused_before_the_body(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA)
    downloader = make_downloader(settings=Settings(min_free_bytes=0), disk_free=lambda _p: MIB)
    with pytest.raises(DownloadFailed, match="not enough disk space"):
        downloader.fetch(url, _target(models), None, None)  # no size known until the server answers
    assert _leftovers(models) == []


def test_the_disk_filling_up_midway_deletes_the_part(
    server: ByteServer, make_downloader: Any, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.add("/f", DATA)
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if os.lseek(fd, 0, os.SEEK_CUR) >= 2 * MIB:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(fetch.os, "write", write)
    with pytest.raises(DownloadFailed) as failed:
        make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert failed.value.final and "disk filled up" in failed.value.reason
    assert _leftovers(models) == []


def test_civitai_redirect_to_another_host_drops_the_token(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    server.add("/signed/2001", DATA, filename="addDetail_v10.safetensors")
    with FakeCivitai() as civitai:
        civitai.download_target = f"{server.url}/signed"
        token = Secret("civ-SECRET-KEY-123")
        host = civitai.url.removeprefix("http://")
        got = make_downloader(tokens={host: token}).fetch(
            f"{civitai.url}/api/download/models/2001", _target(models), sha(DATA), len(DATA)
        )
        assert civitai.requests[0].headers["Authorization"] == "Bearer civ-SECRET-KEY-123"
    assert got.status == "done"
    assert "Authorization" not in server.requests[0].headers  # another host: no credential
    assert got.served_as == "addDetail_v10.safetensors"


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "log in"), (403, "Early Access"), (404, "File not found"), (410, "archived")],
)
def test_civitai_refusals_are_final_and_name_no_secret(
    make_downloader: Any, models: Path, status: int, words: str
) -> None:
    with FakeCivitai() as civitai:
        civitai.fail("/api/download/models/", status)
        token = Secret("civ-SECRET-KEY-123")
        downloader = make_downloader(tokens={civitai.url.removeprefix("http://"): token})
        with pytest.raises(DownloadFailed) as failed:
            downloader.fetch(f"{civitai.url}/api/download/models/2001?token=civ-SECRET-KEY-123", _target(models),
                             sha(DATA), len(DATA))  # fmt: skip
    assert failed.value.final and failed.value.status == status
    assert words in failed.value.reason and "civ-SECRET-KEY-123" not in failed.value.reason
    assert _leftovers(models) == []


def test_civitai_429_waits_and_tries_again(
    server: ByteServer, make_downloader: Any, models: Path, sleeps: list[float]
) -> None:
    server.add("/signed/2001", DATA)
    with FakeCivitai() as civitai:
        civitai.download_target = f"{server.url}/signed"
        civitai.fail("/api/download/models/", 429, 429)
        got = make_downloader().fetch(f"{civitai.url}/api/download/models/2001", _target(models), sha(DATA), None)
    assert got.status == "done" and sleeps == [1.0, 2.0]


def test_429_that_persists_leaves_the_task_for_the_next_run(
    make_downloader: Any, models: Path, sleeps: list[float]
) -> None:
    with FakeCivitai() as civitai:
        civitai.fail("/api/download/models/", *([429] * 4))
        with pytest.raises(DownloadFailed) as failed:
            make_downloader().fetch(f"{civitai.url}/api/download/models/2001", _target(models), sha(DATA), None)
    assert not failed.value.final and "429" in failed.value.reason
    assert sleeps == [1.0, 2.0, 4.0] and _leftovers(models) == []


def test_the_hub_resolve_redirects_to_its_cdn_and_its_published_hash_is_checked(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    digest = sha(DATA)
    server.add(f"/{digest}", DATA)
    with FakeHub([Repo("org/gated", {"x.safetensors": (len(DATA), digest)}, gated="manual")]) as hub:
        hub.cdn = server.url
        hub.approved_tokens.add("hf_TOKEN_1")
        url = f"{hub.url}/org/gated/resolve/main/x.safetensors"
        with pytest.raises(DownloadFailed, match="HTTP 401"):
            make_downloader().fetch(url, _target(models), None, None)
        got = make_downloader(tokens={hub.url.removeprefix("http://"): Secret("hf_TOKEN_1")}).fetch(
            url, _target(models), None, None
        )
        assert hub.requests[-1].headers["Authorization"] == "Bearer hf_TOKEN_1"
    assert got.verified == "sha256" and got.sha256 == digest  # from X-Linked-Etag
    assert "Authorization" not in server.requests[-1].headers


def test_the_hub_published_hash_catches_a_corrupt_cdn(server: ByteServer, make_downloader: Any, models: Path) -> None:
    digest = sha(DATA)
    server.add(f"/{digest}", safetensors_bytes(len(DATA) - 16 - 64, seed=9))
    with FakeHub([Repo("org/r", {"x.safetensors": (len(DATA), digest)})]) as hub:
        hub.cdn = server.url
        with pytest.raises(DownloadFailed) as failed:
            make_downloader().fetch(f"{hub.url}/org/r/resolve/main/x.safetensors", _target(models), None, None)
    assert "mismatch" in failed.value.reason and _leftovers(models) == []


def test_a_file_already_in_place_with_the_right_hash_is_a_no_op(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA)
    final = models / "loras" / "detail" / "add_detail.safetensors"
    final.parent.mkdir(parents=True)
    final.write_bytes(DATA)
    got = make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert got.status == "present" and server.count == 0


def test_a_different_or_truncated_file_in_place_is_never_replaced(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA)
    final = models / "loras" / "detail" / "add_detail.safetensors"
    final.parent.mkdir(parents=True)
    final.write_bytes(DATA[:MIB])
    with pytest.raises(DownloadFailed, match="truncated"):
        make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    other = safetensors_bytes(100, seed=5)
    final.write_bytes(other)
    with pytest.raises(DownloadFailed, match="another SHA256"):
        make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert final.read_bytes() == other and server.count == 0


def test_two_downloads_of_one_file_at_once_leave_it_to_the_first(
    server: ByteServer, make_downloader: Any, models: Path
) -> None:
    url = server.add("/f", DATA)
    server.fail("/f", ("drip", 0.01))
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(make_downloader().fetch(url, _target(models), sha(DATA), len(DATA)))
    )
    first.start()
    part = _target(models).part_path(sha(DATA)[:12])
    assert wait_until(lambda: part.exists() and part.stat().st_size > 0, timeout=10)
    with pytest.raises(DownloadFailed) as busy:
        make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    first.join(timeout=60)
    assert not busy.value.final and "another download" in busy.value.reason
    assert results[0].status == "done" and _target(models).path.read_bytes() == DATA
    # Afterwards the second is a no-op: the file is in place with the right hash.
    assert make_downloader().fetch(url, _target(models), sha(DATA), len(DATA)).status == "present"


def test_a_symlinked_subfolder_leading_out_is_refused(
    server: ByteServer, make_downloader: Any, models: Path, tmp_path: Path
) -> None:
    url = server.add("/f", DATA)
    outside = tmp_path / "outside"
    outside.mkdir()
    (models / "loras" / "detail").symlink_to(outside)
    with pytest.raises(UnsafeTarget):
        make_downloader().fetch(url, _target(models), sha(DATA), len(DATA))
    assert list(outside.iterdir()) == [] and server.count == 0


def test_a_planted_symlink_as_target_or_part_is_never_written_through(
    server: ByteServer, make_downloader: Any, models: Path, tmp_path: Path
) -> None:
    url = server.add("/f", DATA)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = _target(models, "x.safetensors")
    target.path.symlink_to(victim)
    with pytest.raises(UnsafeTarget):
        make_downloader().fetch(url, target, sha(DATA), len(DATA))
    target.path.unlink()
    target.part_path(sha(DATA)[:12]).symlink_to(victim)
    with pytest.raises(UnsafeTarget):
        make_downloader().fetch(url, target, sha(DATA), len(DATA))
    assert victim.read_text() == "keep me" and not target.path.exists()


def test_a_symlinked_model_folder_is_followed_as_the_folder_itself(
    server: ByteServer, make_downloader: Any, tmp_path: Path
) -> None:
    # Users move big folders to other disks and link them: the folder's own link is legitimate.
    disk = tmp_path / "big-disk" / "loras"
    disk.mkdir(parents=True)
    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    (models / "loras").symlink_to(disk)
    url = server.add("/f", DATA)
    got = make_downloader().fetch(url, target_for([str(models / "loras")], "x.safetensors"), sha(DATA), None)
    assert got.status == "done" and (disk / "x.safetensors").read_bytes() == DATA
