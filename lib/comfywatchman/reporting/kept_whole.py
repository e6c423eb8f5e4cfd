"""What the kept contributions of the report's index add up to, kept beside them (``kept_index.save``), so a
cycle where a few workflows changed takes every other workflow's part of the report from here instead of
parsing and gathering two thousand contributions: the counts per readiness, the missing files by answer key
and by folder type, the FOUND files, the missing and the disabled node types (each counted, so a workflow's
part can be taken out again), and per kept workflow its page row and its readiness history entry (as the
JSON text report_history.json holds it).
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from comfywatchman.reporting import markdown

# A workflow's page row (``markdown.Row``'s fields) and its readiness history entry: its path, whether it is
# resolved (then last resolved now), its last resolved time, what it misses (``status_report.missing_of``).
Row = tuple[str, str, tuple[str, ...], bool, str | None]
Entry = tuple[str, bool, str | None, list[str]]


def _count_all(counts: dict[Any, int], keys: Iterable[Any]) -> None:
    """Add one to ``counts`` for each of ``keys`` (what ``Counter.update`` does, on a plain dict: the counts are
    kept with marshal, which writes no dict subclass)."""
    get = counts.get
    for key in keys:
        counts[key] = get(key, 0) + 1


class Whole:
    """The counts a set of kept contributions (``kept_index.contribution``) add up to."""

    def __init__(
        self,
        counts: dict[str, int],
        models: dict[tuple[str | None, str], int],
        folders: dict[str, int],
        nodes: dict[str, int],
        found: int = 0,
        disabled: int = 0,
    ) -> None:
        self.counts = counts
        self.models = models
        self.folders = folders
        self.nodes = nodes
        self.found = found
        self.disabled = disabled

    @staticmethod
    def empty(readiness: Iterable[str]) -> Whole:
        """Return the Whole of no contribution (``readiness``: every readiness, in the report's order)."""
        return Whole({"workflows": 0, **dict.fromkeys(readiness, 0)}, {}, {}, {})

    def add(self, kept: Sequence[Any], sign: int = 1) -> None:
        """Count the contribution ``kept`` in (``sign`` 1) or out (-1); raise ValueError when it was not in."""
        self.counts["workflows"] += sign
        self.counts[kept[2]] += sign
        files, nodes = kept[6], kept[8]
        if sign > 0:  # a full report counts in every workflow: each list in one loop
            models, folders = self.models, self.folders
            for folder, _, status, _, _, lookup_key in files:
                models[folder, lookup_key] = models.get((folder, lookup_key), 0) + 1  # ``answers.key``
                folders[folder or ""] = folders.get(folder or "", 0) + 1
                if status == "FOUND":
                    self.found += 1
            if nodes:
                _count_all(self.nodes, [n[1] for n in nodes])
                self.disabled += [n[2] for n in nodes].count("disabled")
            return
        models, folders = self.models, self.folders
        for f in kept[6]:
            _count(models, (f[0], f[5]), sign)  # ``answers.key``
            _count(folders, f[0] or "", sign)
            if f[2] == "FOUND":
                self.found += sign
        for n in kept[8]:
            _count(self.nodes, n[1], sign)
            if n[2] == "disabled":
                self.disabled += sign
        if self.counts[kept[2]] < 0 or self.found < 0 or self.disabled < 0:
            raise ValueError("a contribution taken out of the whole was not in it")

    def fill(self, aggregate: Any, dirs: Mapping[str, Any], rows: Iterable[Row]) -> None:
        """Set what ``status_report.Aggregate`` gathers of every workflow (counts, missing files and node types,
        where each folder type was looked in, the flags, the page rows) to this whole's (``dirs``: folder type
        -> where its files were looked for; ``rows``: the workflows' in scan order)."""
        aggregate.counts = dict(self.counts)
        aggregate.missing_models = set(self.models)
        aggregate.missing_nodes = set(self.nodes)
        aggregate.model_dirs = {folder: dirs[folder] for folder in self.folders}
        aggregate.has_downloads = self.found > 0
        aggregate.has_disabled = self.disabled > 0
        aggregate.rows = [markdown.Row(*row) for row in rows]

    def dump(
        self,
        rows: Sequence[Row],
        entries: Sequence[Entry],
        spans: Sequence[tuple[int, int]],
        actions: tuple[int, list[int]] | None,
    ) -> bytes:
        """Return this whole and the workflows' ``rows``, ``entries`` and the ``spans`` of their lines in the
        report (``status_file.Writer.workflow_spans``), in scan order, and where the report's action lines
        begin with each one's length (None when unknown), as ``load`` reads them."""
        parts = [self.counts, self.models, self.folders, self.nodes, self.found, self.disabled]
        return marshal.dumps([*parts, list(rows), list(entries), list(spans), actions])


Loaded = tuple[Whole, list[Row], list[Entry], list[tuple[int, int]], tuple[int, list[int]] | None]


def load(blob: bytes | memoryview, workflows: int) -> Loaded:
    """Return the Whole, rows, entries, spans and action lines ``Whole.dump`` wrote for ``workflows``
    workflows; raise ValueError (or what ``marshal`` raises) when ``blob`` is not that."""
    counts, models, folders, nodes, found, disabled, rows, entries, spans, actions = marshal.loads(blob)
    if not all(isinstance(d, dict) for d in (counts, models, folders, nodes)):
        raise ValueError("not the counts of a whole")
    if not all(isinstance(x, list) and len(x) == workflows for x in (rows, entries, spans)):
        raise ValueError("not a row, an entry and a span per workflow")
    if not isinstance(found, int) or not isinstance(disabled, int):
        raise ValueError("not the counts of a whole")
    if actions is not None and not (isinstance(actions, tuple) and len(actions) == 2 and isinstance(actions[1], list)):
        raise ValueError("not where a report's action lines are")
    return Whole(counts, models, folders, nodes, found, disabled), rows, entries, spans, actions


def _count(counts: dict[Any, int], key: Any, sign: int) -> None:
    left = counts.get(key, 0) + sign
    if left > 0:
        counts[key] = left
    elif left == 0:
        del counts[key]
    else:
        raise ValueError("a contribution taken out of the whole was not in it")


def row_of(kept: Sequence[Any]) -> Row:
    """Return the page row (``markdown.Row``'s fields) of a kept contribution."""
    return (kept[0], kept[2], tuple(kept[9]), kept[10], kept[5])


def entry_of(kept: Sequence[Any], missing: list[str]) -> Entry:
    """Return the readiness history entry (``history_text``) of a kept contribution whose workflow misses
    ``missing`` (``status_report.missing_of``)."""
    return (kept[1], kept[3], kept[4], missing)


def history_text(entries: Iterable[Entry], now_text: str) -> bytes:
    """Return report_history.json's text (without its newline) for the workflows' ``entries`` in scan order, a
    resolved one last resolved at ``now_text``: what ``artifacts.write`` writes of that history (each entry
    was validated when it was made)."""
    history = {e[0]: {"last_resolved_at": now_text if e[1] else e[2], "missing": e[3]} for e in entries}
    return orjson.dumps({"workflows": history}, option=orjson.OPT_SORT_KEYS)
