"""Diagnostics on stderr that suit both a person at a terminal and a cron log read months later.

- Every line that goes to a file or a pipe (not a terminal) starts with a UTC timestamp: stderr itself is
  wrapped, so log records, one-line errors and even a traceback get one.
- Inside a stage (:func:`begin_stage` / :func:`end_stage`, called by the stage runner) records are held and
  folded: the same message for a thousand files becomes one line with a count, written when the stage
  ends. Each is still there with ``--verbose`` (nothing folded then), and per-file findings are in the report.
- On a terminal, the scan and the search draw progress bars (:mod:`comfywatchman.progress`); never under
  cron, in a pipe or with ``--quiet``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO, cast

from comfywatchman import progress

PREFIX = "comfywatchman: "


def utc_stamp(now: Callable[[], float] = time.time) -> str:
    """Return ``now`` as the timestamp put in front of every line written to a file."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now()))


class TimestampedStream:
    """A text stream that puts a UTC timestamp in front of every line written to ``stream``."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self._clock = clock
        self._line_start = True

    def write(self, text: str) -> int:
        """Write ``text``, stamping each line that starts in it; return its length."""
        if not text:
            return 0
        pieces = []
        for piece in re.split(r"(?<=\n)", text):
            if not piece:
                continue
            if self._line_start:
                pieces.append(f"{utc_stamp(self._clock)} ")
            pieces.append(piece)
            self._line_start = piece.endswith("\n")
        self.stream.write("".join(pieces))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


# ------------------------------------------------------------------------------------------ folding records

_PLACEHOLDER = re.compile(r"%[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[sdrfgixXeEc%]")
_PATHLIKE = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s:;,()\[\]'\"]*|[^\s:;,()\[\]/\\'\"]+\.[A-Za-z0-9]{2,12}\b")
_NUMBER = re.compile(r"\d+")


def shape(message: str) -> str:
    """Return ``message`` with paths, file names and numbers masked: what repeats of it have in common."""
    return _NUMBER.sub("#", _PATHLIKE.sub("…", message))


def fold_key(record: logging.LogRecord) -> tuple[str, int, str]:
    """Return what makes two records "the same warning": their logger, level and message template when
    the template says something itself (``"civitai: %s: %s"``), else the shape of the whole message."""
    template = str(record.msg)
    literal = _PLACEHOLDER.sub("", template)
    if record.args and sum(c.isalpha() for c in literal) >= 4:
        return record.name, record.levelno, template
    return record.name, record.levelno, shape(record.getMessage())


class _Group:
    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("count", "first")

    first: logging.LogRecord
    count: int

    def __init__(self, first: logging.LogRecord, count: int = 1) -> None:
        self.first, self.count = first, count


class FoldingHandler(logging.Handler):
    """Hands records to ``target``; between :meth:`begin` and :meth:`end` holds them and folds repeats.

    Held records are written at :meth:`end` (or when the handler is flushed or closed), one line per group,
    in the order each group was first seen; a group of several gets the count of the others.
    """

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target
        self.scope: str | None = None
        self._groups: dict[tuple[str, int, str], _Group] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if self.scope is None:
            self.target.handle(record)
            return
        key = fold_key(record)
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = _Group(record)
        else:
            group.count += 1

    def begin(self, scope: str) -> None:
        """Start holding records for ``scope`` (a stage name), writing what an earlier scope still held."""
        self.write_held()
        self.scope = scope

    def end(self) -> None:
        """Write what the scope held, folded, and stop holding."""
        self.write_held()
        self.scope = None

    def write_held(self) -> None:
        """Write the held records, one line per group, and forget them."""
        groups, self._groups = self._groups, {}
        for group in groups.values():
            record = group.first
            if group.count > 1:
                record = logging.makeLogRecord(record.__dict__)
                record.msg = (
                    f"{group.first.getMessage()} (and {group.count - 1:,} more like it in the {self.scope or 'same'}"
                    " stage; --verbose shows each)"
                )
                record.args = None
            self.target.handle(record)

    def flush(self) -> None:
        self.write_held()
        self.target.flush()

    def close(self) -> None:
        self.write_held()
        super().close()


# StreamHandler is generic in typeshed only; subscripting it at run time needs Python 3.11.
if TYPE_CHECKING:
    _TextStreamHandler = logging.StreamHandler[TextIO]
else:
    _TextStreamHandler = logging.StreamHandler


class _StderrHandler(_TextStreamHandler):
    """Writes to ``sys.stderr`` as it is at the time of writing, above any progress bar."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            if stream is None:  # pythonw without a log file: nowhere to write
                return
            progress.write(self.format(record), stream)
            stream.flush()
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    """``comfywatchman: message``, with the level named for warnings and errors (always with --verbose)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.verbose or record.levelno >= logging.WARNING:
            return f"{PREFIX}{record.levelname}: {text}"
        return f"{PREFIX}{text}"


_folding: FoldingHandler | None = None


def configure(verbose: bool, quiet: bool, stream: TextIO | None = None) -> None:
    """Send diagnostics to stderr at the level the flags ask for, folded unless ``verbose``, timestamped
    when stderr is not a terminal, with progress bars when it is one and not ``quiet``."""
    global _folding
    stream = stream if stream is not None else sys.stderr
    terminal = bool(stream is not None and stream.isatty())
    if stream is not None and not terminal and not isinstance(stream, TimestampedStream):
        stream = cast(TextIO, TimestampedStream(stream))  # quacks like a TextIO: write, flush, isatty, the rest
    sys.stderr = stream
    progress.configure(terminal and not quiet)
    level = logging.DEBUG if verbose else (logging.WARNING if quiet else logging.INFO)
    target = _StderrHandler()
    target.setFormatter(_Formatter(verbose))
    handler: logging.Handler = target
    _folding = None
    if not verbose:
        _folding = FoldingHandler(target)
        handler = _folding
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 chatters at DEBUG with full URLs; keep it at WARNING so no query string reaches a log.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _forget_in_child() -> None:
    # A forked worker (the scan's) writes its own records at once: were it to hold them, they would be lost
    # when it exits, and the parent's held records are the parent's to write.
    if _folding is not None:
        _folding._groups.clear()
        _folding.scope = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def begin_stage(name: str) -> None:
    """Hold and fold diagnostics from here to :func:`end_stage` (no-op unless :func:`configure` folds)."""
    if _folding is not None:
        _folding.begin(name)


def end_stage() -> None:
    """Write the diagnostics held since :func:`begin_stage`, repeats folded into one line with a count."""
    if _folding is not None:
        _folding.end()
