"""master_status.json on disk: one JSON document, one workflow or action per line, the small keys last.

Layout (what ``Writer`` makes)::

    {"workflows":[
    {...one workflow...},
    {...}
    ],"actions":[
    {...one action...},
    {...}
    ],"action_totals":{...},"cycle":{...},"summary":{...},...}

so the report writes each workflow entry as soon as it is made and each action once they are ranked (each
validated against the schema's ``$defs/workflow`` or ``$defs/action`` where it is made), never holding the
whole document; and a program reads the small keys (summary, cycle, stale) from the last line alone
(``read_head``) and the lists an item at a time (``items``). A file in another layout (written by an earlier
version, or by hand) is read whole and gives the same answers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import orjson

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError

SCHEMA = "master_status"
LISTS = {"workflows": "workflow", "actions": "action"}  # list key -> its items' definition in the schema
_OPEN = b'{"workflows":['
_BETWEEN = b'],"actions":['
_CHUNK = 512  # lines joined into one write
_TAIL_WINDOW = 1 << 16  # the last line (the small keys) is looked for this many bytes at a time from the end


def part(instance: Mapping[str, Any], definition: str, source: str | Callable[[], str]) -> bytes:
    """Return one list item's compact canonical text, validated against ``$defs/definition`` (raise
    ArtifactError naming ``source`` when it is not valid; ``source`` may be a function returning it, called
    then only)."""
    # The yes/no check first (``artifacts.item_line``'s way): the errors are worded only for an item it refuses.
    if not artifacts.fast_validator(SCHEMA, definition).is_valid(instance):
        artifacts.validate(instance, SCHEMA, source if isinstance(source, str) else source(), definition)
    return encode(instance)


def parts(
    instances: Iterable[Mapping[str, Any]], definition: str, source: Callable[[Mapping[str, Any]], str]
) -> Iterator[bytes]:
    """Yield ``part`` of each of ``instances`` (``source(instance)`` names one that is not valid): ten thousand
    actions at 2,000 workflows, each checked without a call of ``part`` nor its name made."""
    valid = artifacts.fast_validator(SCHEMA, definition).is_valid
    dumps, option = orjson.dumps, orjson.OPT_SORT_KEYS
    for instance in instances:
        if not valid(instance):
            artifacts.validate(instance, SCHEMA, source(instance), definition)
        yield dumps(instance, option=option)


def encode(instance: Mapping[str, Any]) -> bytes:
    """Return the compact canonical text of one list item (sorted keys), not validated."""
    return orjson.dumps(instance, option=orjson.OPT_SORT_KEYS)


class Writer:
    """master_status.json written as it is made, through a temp file beside it renamed over it by ``finish``
    (fsynced), so a reader sees the old report or the new one: the workflows one at a time (``workflow``),
    then the actions (``actions``), then the small keys (``finish``). Leaving the ``with`` block without
    ``finish`` (an error) removes the temp file and leaves the old report as it was."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None
        self._tmp = ""
        self._count = 0
        self._stage = "workflows"
        # The fsync ``finish(head, settle=False)`` left running, and the file it flushes (``settle`` renames it).
        self._syncing: artifacts.Settling | None = None
        # How many bytes are written, and where each workflow's line is in the file: (offset, length), so a
        # later report can copy the lines it keeps without reading them (``copy_workflows``).
        self._offset = 0
        self.workflow_spans: list[tuple[int, int]] = []
        # Where the actions' lines begin, and each one's length (None once a block of unknown lines was written).
        self.actions_at = 0
        self.action_lengths: list[int] | None = []

    def __enter__(self) -> Writer:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = artifacts.temp_beside(self.path)
        self._handle = os.fdopen(fd, "wb", buffering=1 << 20)
        self._write(_OPEN)
        return self

    def _write(self, data: bytes | memoryview) -> None:
        self._handle.write(data)
        self._offset += len(data)

    def __exit__(self, kind: object, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
        if kind is not None:
            self.abandon()

    def _item(self, text: bytes | memoryview) -> None:
        self._write(b",\n" if self._count else b"\n")
        self._write(text)
        self._count += 1

    def workflow(self, text: bytes) -> None:
        """Write one workflow entry (a text from ``part``, or ``encode`` of one validated before)."""
        if self._stage != "workflows":
            raise ValueError("status_file.Writer: workflows come before the actions")
        self.workflow_spans.append((self._offset + (2 if self._count else 1), len(text)))
        self._item(text)

    def workflow_lines(self, texts: Sequence[bytes | memoryview]) -> None:
        """Write workflow entries (as ``workflow`` does each), a few hundred per write."""
        if self._stage != "workflows":
            raise ValueError("status_file.Writer: workflows come before the actions")
        at = self._offset + (2 if self._count else 1)
        for text in texts:
            self.workflow_spans.append((at, len(text)))
            at += len(text) + 2
        self._chunks(texts)

    def copy_workflows(self, source: BinaryIO, start: int, spans: Sequence[tuple[int, int]]) -> None:
        """Write workflow entries copied from the file ``source`` (a report this class wrote): the lines at
        ``spans`` there ((offset, length) each, one after the other from ``start``, as ``workflow_spans`` says),
        copied by the kernel where it can (``os.copy_file_range``), not read."""
        if self._stage != "workflows":
            raise ValueError("status_file.Writer: workflows come before the actions")
        last = spans[-1]
        if spans[0][0] != start:
            raise ValueError("status_file.Writer: the lines to copy do not start where told")
        self._write(b",\n" if self._count else b"\n")
        self.workflow_spans += [(self._offset + at - start, size) for at, size in spans]
        _copy(source, self._handle, start, last[0] + last[1] - start)
        self._offset += last[0] + last[1] - start
        self._count += len(spans)

    def actions(self, texts: Iterable[bytes | memoryview]) -> None:
        """End the workflows and write the actions (texts from ``part``, or lines of an earlier report), in
        order."""
        self._write((b"\n" if self._count else b"") + _BETWEEN)
        self._stage, self._count = "actions", 0
        self.actions_at = self._offset + 1
        if isinstance(texts, list):
            self._chunks(texts)  # the same layout as the workflows': one a line
            return
        # A few hundred lines per write (ten thousand actions at 2,000 workflows).
        batch: list[bytes | memoryview] = []
        for text in texts:
            batch.append(text)
            if len(batch) == _CHUNK:
                self._lines(batch)
                batch = []
        if batch:
            self._lines(batch)

    def action_blocks(self, blocks: Iterable[Block]) -> None:
        """End the workflows and write the actions given in blocks, in order: each block the texts of its
        count of actions joined by ``",\n"`` (as ``_lines`` joins them), in one write; or a list of texts; or
        a ``Copy`` of lines of a report this class wrote (``copy_actions``)."""
        self.actions(())
        for block in blocks:
            if isinstance(block, Copy):
                self.copy_actions(block)
            elif isinstance(block, list):
                if block:
                    self._lines(block)
            elif block[1]:
                self._write((b",\n" if self._count else b"\n") + block[0])
                self._count += block[1]
                self.action_lengths = None  # lines not told apart: a later report reads them

    def copy_actions(self, copy: Copy) -> None:
        """Write action lines copied from the report ``copy.source`` (``copy_workflows``' way)."""
        if not copy.lengths:
            return
        self._write(b",\n" if self._count else b"\n")
        size = sum(copy.lengths) + 2 * (len(copy.lengths) - 1)
        _copy(copy.source, self._handle, copy.start, size)
        self._offset += size
        self._count += len(copy.lengths)
        if self.action_lengths is not None:
            self.action_lengths += copy.lengths

    def _chunks(self, texts: Sequence[bytes | memoryview]) -> None:
        """Write items ``texts`` (``_lines``), a few hundred per write."""
        for start in range(0, len(texts), _CHUNK):
            self._lines(texts[start : start + _CHUNK])

    def _lines(self, texts: Sequence[bytes | memoryview]) -> None:
        """Write items ``texts`` (one a line, as ``_item`` writes each) in one write."""
        self._write((b",\n" if self._count else b"\n") + b",\n".join(texts))
        self._count += len(texts)
        if self._stage == "actions" and self.action_lengths is not None:
            self.action_lengths += map(len, texts)

    def finish(self, head: Mapping[str, Any], settle: bool = True) -> None:
        """Write the small keys of ``head`` (the document whose lists are empty, validated here) as the last
        line, fsync, and rename the file over the report. With ``settle`` False the fsync runs on (in a thread:
        it waits on the disk, tens of milliseconds for a large report, while the caller renders the page) and
        ``settle`` renames the file once it is done; ``abandon`` drops it."""
        if any(head.get(k) != [] for k in LISTS):
            raise ValueError("status_file.Writer: the head's lists must be empty")
        if self._stage != "actions":
            self.actions(())
        artifacts.validate(dict(head), SCHEMA, f"{self.path} (about to be written)")
        rest = orjson.dumps({k: v for k, v in head.items() if k not in LISTS}, option=orjson.OPT_SORT_KEYS)
        handle, self._handle = self._handle, None
        try:
            handle.write((b"\n" if self._count else b"") + b"]," + rest[1:] + b"\n")
            handle.flush()
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            raise
        self._syncing = artifacts.Settling.written(self.path, handle, self._tmp)
        if settle:
            self.settle()

    def settle(self) -> None:
        """Wait for the fsync of the file ``finish`` wrote and rename it over the report (a no-op when there is
        none waiting); raise OSError, the file dropped, when it cannot be flushed or renamed."""
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            syncing.settle()

    def abandon(self) -> None:
        """Drop the file ``finish`` wrote and has not renamed yet (the report stays as it was)."""
        syncing, self._syncing = self._syncing, None
        if syncing is not None:
            syncing.abandon()


class Copy(NamedTuple):
    """Lines of a report ``Writer`` wrote, to copy: from offset ``start`` in ``source``, one after the other
    (each followed by ``",\n"`` but the last), of ``lengths``."""

    source: BinaryIO
    start: int
    lengths: list[int]


# What ``Writer.action_blocks`` takes: a block of joined lines and their count, a list of lines, or a Copy.
Block = tuple[bytes, int] | list[bytes] | Copy


def _copy(source: BinaryIO, target: BinaryIO, start: int, size: int) -> None:
    """Append ``size`` bytes of ``source`` from offset ``start`` to the buffered ``target``: by the kernel
    (``os.copy_file_range``: no copy through this process) where it can, else read and written. Raise OSError
    when ``source`` holds fewer bytes there."""
    copied = 0
    if hasattr(os, "copy_file_range"):
        target.flush()  # the copy goes to the file's own position, after what the buffer held
        with contextlib.suppress(OSError):  # another file system, or a kernel without it: read and written
            while copied < size:
                done = os.copy_file_range(source.fileno(), target.fileno(), size - copied, start + copied)
                if not done:
                    break
                copied += done
    while copied < size:
        source.seek(start + copied)
        chunk = source.read(min(size - copied, 1 << 20))
        if not chunk:
            raise OSError(f"{getattr(source, 'name', 'the last report')}: shorter than its lines say")
        target.write(chunk)
        copied += len(chunk)


def write(path: Path, head: Mapping[str, Any], workflows: Iterable[bytes], actions: Iterable[bytes]) -> None:
    """Write master_status.json at once: ``head`` (both lists empty) and the items' texts (from ``part``)."""
    with Writer(path) as writer:
        for text in workflows:
            writer.workflow(text)
        writer.actions(actions)
        writer.finish(head)


def _layout(path: Path) -> tuple[bool, bytes]:
    """Return (whether the file is in ``Writer``'s layout, its last line)."""
    try:
        with path.open("rb") as handle:
            first = handle.readline()
            last = artifacts.last_line(handle, _TAIL_WINDOW)  # short: the small keys
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (run the report stage first)") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable: {exc.strerror or exc}") from None
    return first == _OPEN + b"\n" and last.startswith(b"],") and last.endswith(b"}"), last


def read_head(path: Path) -> dict[str, Any]:
    """Return master_status.json without its lists (both empty), validated; from the last line alone when
    the file is in ``Writer``'s layout, else from the whole file. Raise ArtifactError naming the file when it
    is missing or broken."""
    ours, last = _layout(path)
    if not ours:
        whole: dict[str, Any] = artifacts.read(path, SCHEMA)
        return {**whole, **{k: [] for k in LISTS}}
    try:
        head = orjson.loads(b"{" + last[2:])
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: its last line is not valid JSON ({exc})") from None
    if not isinstance(head, dict):
        raise ArtifactError(f"{path}: its last line is not the rest of an object")
    head.update({k: [] for k in LISTS})
    artifacts.validate(head, SCHEMA, str(path))
    return head


def items(path: Path, key: str) -> Iterator[dict[str, Any]]:
    """Yield the items of the list ``key`` (``actions`` or ``workflows``), one line read and validated at a
    time (the whole file read when it is in another layout)."""
    ours, _ = _layout(path)
    if not ours:
        yield from artifacts.read(path, SCHEMA)[key]
        return
    opener = _OPEN if key == "workflows" else _BETWEEN
    with path.open("rb") as handle:
        lines = enumerate(handle, start=1)
        for _, line in lines:  # up to the line that opens the list
            if line.rstrip(b"\n") == opener:
                break
            if key == "actions" and line.startswith(_BETWEEN + b"]"):
                return  # no action: the list opens and closes on the line of the small keys
        closed = yield from artifacts.item_lines(lines, path, SCHEMA, LISTS[key])
    if not closed:
        raise ArtifactError(f"{path}: no complete list {key!r} (a torn write?)")


def read(path: Path) -> dict[str, Any]:
    """Return the whole master_status.json, validated (for small reports and tests)."""
    head = read_head(path)
    return {**head, **{k: list(items(path, k)) for k in LISTS}}
