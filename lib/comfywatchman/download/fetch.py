"""Fetching one file: streamed to a part file beside the target, resumed with ``Range`` after a cut, verified
(size, SHA256, safetensors header) before an atomic rename into place.

Credentials follow the search client's rule (``search/http.py``): each token belongs to one host and is sent
there only; redirects are followed here, hop by hop, so the ``Authorization`` header is dropped as soon as a
redirect leaves the token's host (Civitai's signed URLs, the Hub's CDN). Every message is scrubbed of secrets.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urljoin

import requests

from comfywatchman import humanize
from comfywatchman.download import paths, safetensors
from comfywatchman.download.progress import ProgressFactory, default_factory
from comfywatchman.search.http import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    USER_AGENT,
    host_of,
    parse_retry_after,
    scrub_text,
)

if TYPE_CHECKING:
    from comfywatchman.config import Config, Secret

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


# A NamedTuple (Settings) and plain classes, not dataclasses: making a dataclass costs a process 0.2 to 0.4 ms
# (Python 3.11), a NamedTuple a tenth of that, a plain class about 6 us.
class Settings(NamedTuple):
    """Knobs of the downloader; ``from_config`` reads ``[download]``."""

    min_free_bytes: int = 1024 * MIB
    max_attempts: int = 4
    backoff_max: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    chunk: int = MIB

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        """Return the settings of ``config``'s ``[download]`` section, defaults for keys it lacks."""
        section = config.data.get("download", {})
        d = cls()
        return cls(
            min_free_bytes=int(section.get("min_free_mb", d.min_free_bytes // MIB)) * MIB,
            max_attempts=int(section.get("max_attempts", d.max_attempts)),
            backoff_max=float(section.get("backoff_max_seconds", d.backoff_max)),
            connect_timeout=float(section.get("connect_timeout_seconds", d.connect_timeout)),
            read_timeout=float(section.get("read_timeout_seconds", d.read_timeout)),
        )


class DownloadFailed(Exception):
    """A download that did not end with the file in place. ``final``: trying again will not help (401, 404,
    a hash mismatch); otherwise the task waits for the next run (429, a cut, a busy part file)."""

    def __init__(self, reason: str, final: bool = True, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final
        self.status = status


class Fetched:
    """A file in place: ``status`` is ``done`` (downloaded), ``copied`` (from a file this run downloaded) or
    ``present`` (already there, verified)."""

    __slots__ = ("path", "resumed_from", "seconds", "served_as", "sha256", "size", "status", "transferred", "verified")

    status: str
    path: Path
    size: int
    sha256: str | None
    verified: str  # "sha256" or "size": what the file was checked against
    transferred: int
    resumed_from: int
    seconds: float
    served_as: str | None

    def __init__(
        self,
        status: str,
        path: Path,
        size: int,
        sha256: str | None,
        verified: str,
        transferred: int = 0,
        resumed_from: int = 0,
        seconds: float = 0.0,
        served_as: str | None = None,
    ) -> None:
        self.status, self.path, self.size, self.sha256, self.verified = status, path, size, sha256, verified
        self.transferred, self.resumed_from = transferred, resumed_from
        self.seconds, self.served_as = seconds, served_as


class _Published:
    """What the server says about the file along the way: the Hub's ``X-Linked-Etag``/``X-Linked-Size``."""

    __slots__ = ("served_as", "sha256", "size")

    sha256: str | None
    size: int | None
    served_as: str | None

    def __init__(self, sha256: str | None = None, size: int | None = None, served_as: str | None = None) -> None:
        self.sha256, self.size, self.served_as = sha256, size, served_as


def sha256_of(path: Path | int, upto: int | None = None) -> str:
    """Return the hex SHA256 of the file at ``path`` (or open fd), of its first ``upto`` bytes when given."""
    return str(_hasher_of(path, upto).hexdigest())


def _hasher_of(path: Path | int, upto: int | None = None) -> Any:
    hasher = hashlib.sha256()
    fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        offset = 0
        os.lseek(fd, 0, os.SEEK_SET)  # lseek/read, not pread: Windows has no pread
        while upto is None or offset < upto:
            want = MIB * 4 if upto is None else min(MIB * 4, upto - offset)
            block = os.read(fd, want)
            if not block:
                break
            hasher.update(block)
            offset += len(block)
    finally:
        if not isinstance(path, int):
            os.close(fd)
    return hasher


class UrlRewriter:
    """Rewrites huggingface.co and civitai.com URLs to the configured service addresses (``HF_ENDPOINT`` /
    ``[huggingface] endpoint``, ``[civitai] base_url``), so a mirror or a local stand-in serves the bytes, as
    the official clients do. The rule is the search stage's own (``search.declared.service_url``)."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: Config) -> UrlRewriter:
        """Return the rewriter for ``config``'s Hub and Civitai settings."""
        return cls(config)

    def rewrite(self, url: str) -> str:
        """Return ``url`` with a Civitai or Hub host replaced by its configured base (unchanged without config)."""
        if self.config is None:
            return url
        from comfywatchman.search.declared import service_url

        return service_url(url, self.config)


def _disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


class Downloader:
    """Downloads files for one run. ``sleep``, ``clock`` and ``disk_free`` are parameters so tests need not
    wait or fill a disk; ``progress`` makes the bar or the 10% log lines."""

    __slots__ = ("clock", "disk_free", "progress", "rewriter", "session", "settings", "sleep", "tokens")

    settings: Settings
    tokens: Mapping[str, Secret]
    rewriter: UrlRewriter
    session: requests.Session
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    disk_free: Callable[[Path], int]
    progress: ProgressFactory

    def __init__(
        self,
        settings: Settings | None = None,
        tokens: Mapping[str, Secret] | None = None,
        rewriter: UrlRewriter | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        disk_free: Callable[[Path], int] = _disk_free,
        progress: ProgressFactory | None = None,
    ) -> None:
        self.settings = Settings() if settings is None else settings
        self.rewriter = UrlRewriter() if rewriter is None else rewriter
        self.session = requests.Session() if session is None else session
        self.sleep, self.clock, self.disk_free = sleep, clock, disk_free
        self.progress = default_factory() if progress is None else progress
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.trust_env = False  # credentials come from here only, never from ~/.netrc
        self.tokens = {host.lower(): secret for host, secret in (tokens or {}).items() if secret}

    def scrub(self, text: str) -> str:
        """Return ``text`` with every token, ``token=`` parameter and Bearer value masked."""
        for secret in self.tokens.values():
            if secret.reveal():
                text = text.replace(secret.reveal(), "***")
        return scrub_text(text)

    # -- one file ----------------------------------------------------------------------------------------

    def fetch(self, url: str, target: paths.Target, sha256: str | None, size: int | None) -> Fetched:
        """Put the file ``url`` serves at ``target``, verified against ``sha256`` and ``size`` (each may be None:
        the server's published values are used when it gives them); return what was done.

        Raise DownloadFailed with a reason fit for a report, UnsafeTarget when the target would leave the folder.
        """
        expected_sha = sha256.lower() if sha256 and _HEX64.match(sha256) else None
        target.prepare()
        present = self._already_present(target, expected_sha, size)
        if present is not None:
            return present
        tag = (expected_sha or hashlib.sha256(url.encode()).hexdigest())[:12]
        part = target.part_path(tag)
        if size is not None:
            self._check_space(part.parent, size)
        fd = paths.open_nofollow(part, os.O_RDWR | os.O_CREAT)
        try:
            if not _try_lock(fd):
                raise DownloadFailed(f"another download of {target.name} is running; left to it", final=False)
            return self._fetch_locked(url, target, part, fd, expected_sha, size)
        except BaseException:
            # An empty part file (a refusal before any byte) is no resume point: leave nothing behind.
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size == 0:
                    _remove(part)
            raise
        finally:
            os.close(fd)

    def copy_local(self, source: Path, target: paths.Target, sha256: str, size: int | None) -> Fetched:
        """Put a copy of ``source`` (a file this run verified against ``sha256``) at ``target``, through the same
        part file, verification and atomic rename as a download: the same file wanted under two names or in two
        folders is fetched once. Return what was done; raise DownloadFailed or UnsafeTarget like :meth:`fetch`."""
        target.prepare()
        present = self._already_present(target, sha256.lower(), size)
        if present is not None:
            return present
        self._check_space(target.path.parent, os.stat(source).st_size)
        part = target.part_path(sha256.lower()[:12])
        fd = paths.open_nofollow(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        started = self.clock()
        try:
            if not _try_lock(fd):
                raise DownloadFailed(f"another download of {target.name} is running; left to it", final=False)
            hasher = hashlib.sha256()
            offset = 0
            with open(source, "rb") as handle:
                while block := handle.read(self.settings.chunk):
                    _write_all(fd, block, offset, part)
                    hasher.update(block)
                    offset += len(block)
            os.fsync(fd)
            fetched = self._finish(target, part, fd, hasher, sha256, size, 0, 0, started, _Published())
        except BaseException:
            _remove(part)
            raise
        finally:
            os.close(fd)
        fetched.status = "copied"
        return fetched

    def _already_present(self, target: paths.Target, sha: str | None, size: int | None) -> Fetched | None:
        final = target.path
        target.check_contained()
        try:
            actual_size = os.stat(final).st_size
        except FileNotFoundError:
            return None
        reason = _truncation(final, target.name)
        if reason:
            raise DownloadFailed(f"{final} is already there but {reason}; remove it to download it again")
        if sha:
            actual = sha256_of(final)
            if actual == sha:
                return Fetched("present", final, actual_size, actual, "sha256")
            raise DownloadFailed(f"{final} is already there with another SHA256 ({actual[:12]}…); not replaced")
        if size is not None and actual_size == size:
            return Fetched("present", final, actual_size, None, "size")
        raise DownloadFailed(f"{final} is already there and cannot be verified; not replaced")

    def _check_space(self, folder: Path, needed: int) -> None:
        free = self.disk_free(folder)
        if free - needed < self.settings.min_free_bytes:
            raise DownloadFailed(
                f"not enough disk space in {folder}: {humanize.size(needed)} needed, {humanize.size(free)} free "
                f"and {humanize.size(self.settings.min_free_bytes)} must stay free ([download] min_free_mb)"
            )

    def _fetch_locked(
        self, url: str, target: paths.Target, part: Path, fd: int, sha: str | None, size: int | None
    ) -> Fetched:
        started = self.clock()
        have = os.fstat(fd).st_size
        resumed_from = have
        if size is not None and have > size:
            os.ftruncate(fd, 0)
            have = 0
        hasher, hashed = None, -1
        transferred = 0
        published = _Published()
        failure = "no attempt"
        for attempt in range(1, self.settings.max_attempts + 1):
            have = os.fstat(fd).st_size
            if hashed != have:
                hasher, hashed = _hasher_of(fd, have), have
            try:
                response = self._open(url, {"Range": f"bytes={have}-"} if have else {}, published)
            except _Retry as exc:
                failure = exc.reason
                self._backoff(attempt, exc.retry_after)
                continue
            with response:
                start, total = self._start_and_total(response, have, size, published, fd, part)
                if start is None:
                    failure = "the server could not resume; starting over"
                    continue
                if start == 0 and have:
                    hasher, hashed, have = hashlib.sha256(), 0, 0
                if total is not None:
                    self._check_space(part.parent, total - have)
                label = f"{target.name} ({humanize.size(total)})"
                try:
                    received = self._stream(response, fd, hasher, have, total, label, part)
                except _Cut as exc:
                    transferred += exc.received
                    hashed = have + exc.received  # the hasher has seen exactly the bytes written
                    failure = f"the connection was cut after {humanize.size(hashed)} ({exc.reason})"
                    logger.info("%s: %s; resuming", target.name, failure)
                    self._backoff(attempt, None)
                    continue
                transferred += received
                os.fsync(fd)
                return self._finish(
                    target, part, fd, hasher, sha or published.sha256, size or published.size or total,
                    transferred, resumed_from, started, published,
                )  # fmt: skip
        raise DownloadFailed(
            f"{failure}; tried {self.settings.max_attempts} times, the part file is kept and the next run resumes",
            final=False,
        )

    def _start_and_total(
        self, response: requests.Response, have: int, size: int | None, published: _Published, fd: int, part: Path
    ) -> tuple[int | None, int | None]:
        """Return where the body starts and the file's full size; start None when the attempt is wasted."""
        status = response.status_code
        if status == 416:
            # The part may already hold every byte (cut just before the rename): the final check decides.
            if have and have == (size or published.size):
                return have, have
            os.ftruncate(fd, 0)
            return None, None
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                os.ftruncate(fd, 0)
                return None, None
            total = None if match.group(3) == "*" else int(match.group(3))
            return have, total
        if status == 200:
            if have:
                logger.info("%s: the server ignored the Range; starting over", part.name)
                os.ftruncate(fd, 0)
            length = response.headers.get("Content-Length")
            return 0, int(length) if length and length.isdigit() else None
        raise AssertionError(f"unexpected status {status}")  # _open returns 200, 206 or 416 only

    def _stream(
        self, response: requests.Response, fd: int, hasher: Any, have: int, total: int | None, label: str, part: Path
    ) -> int:
        received = 0
        bar = self.progress(label, total, have)
        try:
            for chunk in response.iter_content(self.settings.chunk):
                if total is not None and have + received + len(chunk) > total:
                    _remove(part)
                    raise DownloadFailed(f"the server sent more than the {total} bytes it announced; part deleted")
                _write_all(fd, chunk, have + received, part)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
            raise _Cut(received, type(exc).__name__) from None
        finally:
            bar.close()
        if total is not None and have + received < total:
            raise _Cut(received, f"{have + received} of {total} bytes")
        return received

    def _finish(
        self,
        target: paths.Target,
        part: Path,
        fd: int,
        hasher: Any,
        sha: str | None,
        size: int | None,
        transferred: int,
        resumed_from: int,
        started: float,
        published: _Published,
    ) -> Fetched:
        actual_size = os.fstat(fd).st_size
        if size is not None and actual_size != size:
            _remove(part)
            raise DownloadFailed(f"size mismatch: got {actual_size} bytes, the published size is {size}; part deleted")
        actual_sha = hasher.hexdigest()
        if sha and actual_sha != sha.lower():
            _remove(part)
            raise DownloadFailed(f"SHA256 mismatch: got {actual_sha}, expected {sha.lower()}; part deleted")
        reason = _truncation(part, target.name)
        if reason:
            _remove(part)
            raise DownloadFailed(f"the downloaded file is {reason}; part deleted")
        target.check_contained()
        _place(part, target.path)
        logger.info("%s: in place (%s)", target.path, humanize.size(actual_size))
        return Fetched(
            "done", target.path, actual_size, actual_sha, "sha256" if sha else "size",
            transferred, resumed_from, self.clock() - started, published.served_as,
        )  # fmt: skip

    # -- HTTP --------------------------------------------------------------------------------------------

    def _open(self, url: str, headers: dict[str, str], published: _Published) -> requests.Response:
        """Return the streamed answer (200, 206 or 416) after following redirects, tokens per host.

        Raise _Retry for 429/5xx/connection failures and DownloadFailed (final) for the other answers.
        """
        current = self.rewriter.rewrite(url)
        for _hop in range(MAX_REDIRECTS + 1):
            host = host_of(current)
            send = dict(headers)
            token = self.tokens.get(host)
            if token:
                send["Authorization"] = f"Bearer {token.reveal()}"
            try:
                response = self.session.get(
                    current,
                    headers=send,
                    stream=True,
                    allow_redirects=False,
                    timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                )
            except requests.RequestException as exc:
                raise _Retry(f"cannot reach {host} ({type(exc).__name__})") from None
            _note_published(response, published)
            if response.status_code in REDIRECT_STATUSES and response.headers.get("Location"):
                current = urljoin(current, response.headers["Location"])
                response.close()
                continue
            if response.status_code in (200, 206, 416):
                return response
            raise self._refusal(response, host)
        raise DownloadFailed(f"too many redirects from {self.scrub(url)}")

    def _refusal(self, response: requests.Response, host: str) -> Exception:
        status = response.status_code
        detail = _error_text(response)
        response.close()
        if status in _RETRY_STATUSES:
            asked = parse_retry_after(response.headers.get("Retry-After"))
            return _Retry(self.scrub(f"{host} answered HTTP {status}{detail}"), asked)
        hint = {
            401: "login required: set the service's token (CIVITAI_API_KEY or HF_TOKEN)",
            403: "no access (early access, a gated repo whose terms you have not accepted, or a private file)",
            404: "the file is not there",
            410: "the file was archived or removed",
        }.get(status, "refused")
        return DownloadFailed(self.scrub(f"{host} answered HTTP {status}: {hint}{detail}"), final=True, status=status)

    def _backoff(self, attempt: int, asked: float | None) -> None:
        if attempt >= self.settings.max_attempts:
            return
        wait = min(self.settings.backoff_max, 2.0 ** (attempt - 1))
        if asked is not None:
            wait = max(wait, min(asked, self.settings.backoff_max))
        self.sleep(wait)


class _Retry(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Cut(Exception):
    def __init__(self, received: int, reason: str) -> None:
        super().__init__(reason)
        self.received = received
        self.reason = reason


def _note_published(response: requests.Response, published: _Published) -> None:
    etag = response.headers.get("X-Linked-Etag", "").strip().strip('"').removeprefix("W/").strip('"')
    if _HEX64.match(etag):
        published.sha256 = etag.lower()
    linked = response.headers.get("X-Linked-Size", "")
    if linked.isdigit():
        published.size = int(linked)
    served = paths.content_disposition_name(response.headers.get("Content-Disposition"))
    if served:
        published.served_as = served


def _error_text(response: requests.Response) -> str:
    message = response.headers.get("X-Error-Message")
    if not message:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            said = [body[k] for k in ("error", "message") if isinstance(body.get(k), str)]
            message = ": ".join(said) or None
    return f" ({message[:200]})" if message else ""


def _write_all(fd: int, chunk: bytes, offset: int, part: Path) -> None:
    view = memoryview(chunk)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            _remove(part)
            raise DownloadFailed(f"the disk filled up while writing {part.name}; part deleted") from None
        raise


def _truncation(path: Path, name: str) -> str | None:
    """Return why the file at ``path`` (to be called ``name``) is a truncated safetensors file, or None."""
    if not safetensors.is_safetensors(name):
        return None
    try:
        return safetensors.truncation_reason(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def _place(part: Path, final: Path) -> None:
    """Move the verified part file to ``final`` without ever replacing a file that appeared meanwhile."""
    try:
        os.link(part, final, follow_symlinks=False)
    except FileExistsError:
        raise DownloadFailed(f"{final} appeared while downloading; not replaced (part kept)") from None
    except OSError:
        # No hard links on this file system (exFAT, some network shares): rename, after checking again.
        if os.path.lexists(final):
            raise DownloadFailed(f"{final} appeared while downloading; not replaced (part kept)") from None
        os.replace(part, final)
    else:
        os.unlink(part)
    with contextlib.suppress(OSError):
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


if sys.platform == "win32":  # pragma: no cover - Windows only

    def _try_lock(fd: int) -> bool:
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False
