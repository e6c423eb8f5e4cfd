"""Report: write ``output/reports/status/master_status.json`` and ``.md`` from the cycle's artifacts."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from comfywatchman import artifacts, availability, lazy, stage_inputs
from comfywatchman.comfy.manager_files import maps_used
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import (
    commands,
    kept_actions,
    kept_whole,
    markdown,
    staleness,
    status_file,
    verification,
)
from comfywatchman.reporting import facts as install_facts
from comfywatchman.stages import collector
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.state_manager import StateManager

if TYPE_CHECKING:
    from comfywatchman.reporting import answers as answers_module
    from comfywatchman.reporting import broken_models, kept_index, parts, status_report
else:
    # Imported when first used: a report where nothing changed renders the page's tail and returns before.
    answers_module = lazy.module("comfywatchman.reporting.answers")
    broken_models = lazy.module("comfywatchman.reporting.broken_models")
    kept_index = lazy.module("comfywatchman.reporting.kept_index")
    parts = lazy.module("comfywatchman.reporting.parts")
    status_report = lazy.module("comfywatchman.reporting.status_report")

logger = logging.getLogger(__name__)

HISTORY = "report_history.json"


def recent_intake(state_dir: Any, limit: int) -> list[dict[str, Any]]:
    """Return the last ``limit`` acknowledgments of ``intake_log.jsonl``, newest first: its last lines only
    are read (the log grows by every workflow ever acknowledged)."""
    if limit <= 0:
        return []
    path = state_dir / "intake_log.jsonl"
    offset = _tail_offset(path, limit)
    return list(reversed(deque(artifacts.read_jsonl(path, "intake_log_entry", offset), maxlen=limit)))


def _tail_offset(path: Path, lines: int, window: int = 1 << 16) -> int:
    """Return the offset of a line start in ``path`` followed by at least ``lines`` lines (twice as many and
    a few more, for lines skipped as broken), or 0 when the file is not that long."""
    try:
        with path.open("rb") as handle:
            end = start = handle.seek(0, os.SEEK_END)
            while start > 0:
                start = max(0, start - window)
                handle.seek(start)
                chunk = handle.read(end - start)
                if start > 0 and chunk.count(b"\n") > 2 * lines + 8:
                    return start + chunk.index(b"\n") + 1
            return 0
    except OSError:
        return 0


def run(ctx: StageContext) -> StageOutcome:
    """Build the master status report, with the cycle collector paused (``collector.paused``: it makes tens
    of thousands of small, acyclic objects, and the collector's own cost was a quarter of the report's time)."""
    with collector.paused():
        return _run(ctx)


def _run(ctx: StageContext) -> StageOutcome:
    """Build the master status report from scan.json, search.json and verify.json; write JSON and Markdown.

    When nothing it reads changed, or nothing the findings are made of (``unchanged_findings``), the last
    report stands and only the page's tail is rendered again (``refresh_page``). Else scan.json is read one
    workflow at a time, and each workflow's part reused from the last report when its scan entry and the
    answers it depends on are unchanged (``parts``). When the intake could not list a
    folder that holds known workflows, the last good report is kept, marked stale with the reason, and the
    readiness history is left as it was.
    """
    outcome = StageOutcome("report")
    state = ctx.state_dir
    now_text = ctx.now().isoformat(timespec="seconds")
    unavailable, kept_paths = staleness.intake_entries(state)
    reports = ctx.config.reports_dir
    kept = staleness.keep_last_report(reports / "master_status.json", unavailable, ctx.cycle_id, now_text)
    if kept is not None:
        return _write_stale(kept, reports, outcome)
    wanted = inputs_fingerprint(ctx, unavailable)
    outputs = output_paths(ctx)
    recorded = stage_inputs.reusable(state, "report", wanted, outputs, ctx.now())
    if recorded is not None and refresh_page(ctx, recorded, wanted, now_text, outcome):
        return outcome
    scan = parts.ScanLines(state / "scan.json")
    # scan.json keeps the id of the cycle that last changed it (an unchanged scan is not rewritten), so the
    # two ids differ in every quiet cycle: nothing to compare here.
    verify = verification.load(state)
    searched_mark = answers_module.mark(state / "search.json")
    made_of = basis_parts(ctx, scan.head, unavailable, verify)
    # Hashed once (a megabyte with verify.json's findings): the digest stands for it in ``findings_key``.
    basis = hashlib.sha256(findings_text(made_of, searched_mark)).digest()
    last = stage_inputs.previous(state, "report")
    digests = None
    if last is not None and findings_recorded(ctx, last):
        # Each line's digest once: for the comparison, then for the workflows' parts when it fails.
        digests = scan.digests()
        if unchanged_findings(digests, basis, last) and refresh_page(ctx, last, wanted, now_text, outcome):
            return outcome
    kept_models = kept_model_findings(state)
    # The header check of every installed file runs beside the workflows' pass when it must run at all.
    with broken_models.Check(state, start=kept_models is None and broken_models.worth_a_process(state)) as check:
        try:
            answers = answers_module.load(state / "search.json", state / answers_module.KEPT, searched_mark)
            searched = True
        except ArtifactError as exc:
            outcome.fail(str(exc))
            answers, searched = answers_module.Answers(), False
        index_key = kept_index_key(made_of)
        built = None
        # The kept actions, and how this report changes them (``incremental`` fills it when it uses them).
        actions_kept = kept_actions.Kept()
        if digests is not None and searched and kept_models is not None and not unavailable and not kept_paths:
            built = incremental(
                ctx,
                scan,
                digests,
                answers,
                verify,
                outcome,
                kept_models,
                index_key,
                now_text,
                searched_mark,
                actions_kept,
            )
        if built is None:
            actions_kept = kept_actions.Kept()  # the list is written whole
            built = full(
                ctx, scan, digests, answers, searched, verify, outcome, unavailable, kept_models, check, now_text
            )
    aggregate, ranked, head, index, lines_seen, before, written = built
    summary = head["summary"]
    page = {**head, "actions": ranked}
    try:
        # The page is rendered while master_status.json is flushed to disk (``findings``), then put in place.
        page_lines = [markdown.header(page), markdown.body(page, aggregate.rows), markdown.tail(page)]
        written.settle()
    except BaseException:
        written.abandon()
        raise
    artifacts.atomic_write_text(reports / "master_status.md", markdown.join_parts(page_lines))
    write_history(state, aggregate.history, before, kept_paths, aggregate.history_text)
    outcome.counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    outcome.detail = ", ".join(f"{summary[r]} {r}" for r in status_report.READINESS if summary[r]) or "no workflows"
    if not unavailable and outcome.ok:
        extra = {**page_parts(page, page_lines), "broken_for": stage_inputs.stat_key(state / "model_cache.json")}
        extra["findings"] = findings_key(lines_seen, basis)
        stage_inputs.record(state, "report", ctx.cycle_id, wanted, outputs, None, outcome.counts, outcome.detail, extra)
        lines, dirs, seeds, whole = index
        mark = (searched_mark or b"").decode("ascii")
        flags = [aggregate.has_disabled, aggregate.has_downloads]
        kept = {"key": index_key, "mark": mark, "now": now_text, "flags": flags, "dirs": dirs, "seeds": seeds}
        # The whole with where each workflow's line went in master_status.json (the next report copies them).
        lengths = written.action_lengths
        actions_at = (written.actions_at, lengths) if lengths is not None and len(lengths) == len(ranked) else None
        blob = whole[0].dump(whole[1], whole[2], written.workflow_spans, actions_at) if dirs is not None else None
        kept_index.save(state, kept, lines, ranked, index_outputs(ctx), blob)
        kept_actions.save(state, actions_kept, ranked, index_key, reports / "master_status.json")
    else:
        (state / kept_index.FILE).unlink(missing_ok=True)
        (state / kept_actions.FILE).unlink(missing_ok=True)
    logger.info("report: %s -> %s", outcome.detail, reports / "master_status.md")
    return outcome


Built = tuple[
    status_report.Aggregate,
    list[dict[str, Any]],
    dict[str, Any],
    tuple[list[bytes], Any, list[Any], kept_index.Parts],
    Any,
    Mapping[str, Any],
    status_file.Writer,
]


def full(
    ctx: StageContext,
    scan: parts.ScanLines,
    digests: Sequence[bytes] | None,
    answers: answers_module.Answers,
    searched: bool,
    verify: Mapping[str, Any] | None,
    outcome: StageOutcome,
    unavailable: list[dict[str, Any]],
    models: tuple[list[dict[str, str]], list[dict[str, Any]]] | None,
    check: broken_models.Check,
    now_text: str,
) -> Built:
    """Build the report from every workflow of scan.json (each one's part reused when it can be: ``parts``)
    and write master_status.json; return the Aggregate, the ranked actions, the document's head, what the
    kept index takes (each workflow's contribution, where each folder type was looked in), the digest of the
    lines seen (``findings_key``), the readiness history read, and the writer of master_status.json, whose
    file the caller puts in place (``status_file.Writer.settle``: it is flushed to disk meanwhile)."""
    state = ctx.state_dir
    count_inactive = ctx.config.section("scan")["count_inactive_nodes"]
    drift = verification.drift_ids(verify)
    workflows = WorkflowPass(scan, answers, drift, read_history(state), count_inactive, now_text, digests)
    with status_file.Writer(ctx.config.reports_dir / "master_status.json") as writer:
        aggregate = build_workflows(ctx, workflows, writer)
        found = answers if searched else None
        models = models or check.findings()
        ranked, head = findings(ctx, scan.head, aggregate, found, verify, outcome, writer, unavailable, models)
    built = workflows.index
    index = (built.lines, built.dirs, built.seeds.table, built.kept_whole())
    return aggregate, ranked, head, index, workflows.lines_seen, workflows.history, writer


def incremental(
    ctx: StageContext,
    scan: parts.ScanLines,
    digests: Sequence[bytes],
    answers: answers_module.Answers,
    verify: Mapping[str, Any] | None,
    outcome: StageOutcome,
    models: tuple[list[dict[str, str]], list[dict[str, Any]]],
    index_key: str,
    now_text: str,
    searched: bytes | None,
    actions_kept: kept_actions.Kept,
) -> Built | None:
    """Build the report from the kept index (``kept_index``) and the workflows that changed since, and write
    master_status.json; return what ``full`` returns, or None, having written nothing, when the index cannot
    serve this cycle (the report is then built in full). ``actions_kept`` is filled with the kept actions
    read, and how the report changed them, when it made its actions from them."""
    index = kept_index.load(ctx.state_dir, index_key, index_outputs(ctx))
    if index is None:
        return None
    try:
        return _incremental(
            ctx, scan, digests, answers, verify, outcome, models, index, now_text, searched, actions_kept
        )
    except (kept_index.NotIncremental, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        logger.info("report: built in full, the kept index cannot serve this cycle (%s)", exc)
        return None


def _incremental(
    ctx: StageContext,
    scan: parts.ScanLines,
    digests: Sequence[bytes],
    answers: answers_module.Answers,
    verify: Mapping[str, Any] | None,
    outcome: StageOutcome,
    models: tuple[list[dict[str, str]], list[dict[str, Any]]],
    index: kept_index.Index,
    now_text: str,
    searched: bytes | None,
    actions_kept: kept_actions.Kept,
) -> Built:
    """``incremental`` once the index is loaded; raise NotIncremental (or an error of a malformed index) when
    it cannot serve, the last report left as it was (``status_file.Writer`` drops what it wrote).
    ``now_text``: when the workflows resolved now were; ``searched``: search.json's ``answers.mark``."""
    target = ctx.config.reports_dir / "master_status.json"
    changed = kept_index.changed_answers(index, answers, searched)
    with (
        kept_index.OldReport(target, len(index.lines), index.head["actions"]) as old,
        status_file.Writer(target) as writer,
    ):
        count = index.head["actions"]
        read = kept_actions.load(ctx.state_dir, index.head["key"], target, count)
        if read.actions is not None:
            logger.debug("report: the last report's %d actions read from %s", count, kept_actions.FILE)
            actions_kept.actions, actions_kept.records, actions_kept.size = read.actions, read.records, read.size
        again = _workflows_again(
            ctx, scan, digests, answers, verify, index, changed, now_text, old, writer, read.actions
        )
        aggregate, dirty, lines, dirs, reused, whole = again
        actions = partial(_actions_again, aggregate, dirty, verify, old, target, actions_kept)
        ranked, head = findings(ctx, scan.head, aggregate, answers, verify, outcome, writer, [], models, actions)
    lines_seen = hashlib.blake2b(digest_size=16)
    for line_digest in digests:
        lines_seen.update(line_digest)
    logger.debug("report: %d of %d workflows reused from %s", reused, len(digests), kept_index.FILE)
    return aggregate, ranked, head, (lines, dirs, index.seeds.table, whole), lines_seen, {}, writer


Again = tuple[status_report.Aggregate, set[str], list[bytes], dict[str, Any], int, kept_index.Parts]


def _workflows_again(
    ctx: StageContext,
    scan: parts.ScanLines,
    digests: Sequence[bytes],
    answers: answers_module.Answers,
    verify: Mapping[str, Any] | None,
    index: kept_index.Index,
    changed: frozenset[tuple[str | None, str]],
    now_text: str,
    old: kept_index.OldReport,
    writer: status_file.Writer,
    kept: list[dict[str, Any]] | None,
) -> Again:
    """Write every workflow's line of master_status.json to ``writer`` in scan order (a kept one copied from
    ``old``, a changed one worked out again) and gather them; return the Aggregate, the actions to make again
    (the others' lines are copied from ``old``), the index's new lines, where each folder type was looked in,
    how many workflows were kept, and what they all add up to (``kept_whole``). The Aggregate's pending
    actions are those alone (``kept_index.gather``'s ``wanted``). The changed workflows alone are worked
    through when the index keeps what the others add up to and ``kept`` (the last report's actions,
    ``kept_actions.slim``) says which workflows needed each action (``_workflows_delta``); else every kept
    contribution is gathered (``_workflows_gathered``)."""
    loaded = None
    if index.whole:
        try:
            loaded = kept_whole.load(index.whole, len(index.lines))
        except (ValueError, TypeError, EOFError) as exc:
            logger.debug("report: the kept whole not read (%s)", exc)
        else:
            old.action_lines = loaded[4]
    if kept is not None and loaded is not None:
        try:
            pieces, spans, again = _workflows_delta(
                ctx, scan, digests, answers, verify, index, changed, now_text, old, writer.path, kept, loaded
            )
        except _Slow as exc:
            logger.debug("report: every kept workflow gathered (%s)", exc)
        else:
            _write_workflows(writer, old, pieces, spans)
            old.skip_workflows(spans[-1][0] + spans[-1][1])
            return again
    old_lines = old.workflow_lines()
    written, again = _workflows_gathered(
        ctx, scan, digests, answers, verify, index, changed, now_text, old_lines, writer.path
    )
    writer.workflow_lines(written)
    return again


def _write_workflows(
    writer: status_file.Writer, old: kept_index.OldReport, pieces: list[bytes | int], spans: list[tuple[int, int]]
) -> None:
    """Write the workflows' lines to ``writer``: a text as it is, a kept place (an int) as the line at ``spans``
    in the last report ``old``, each run of kept lines one after the other there copied at once."""
    texts: list[bytes] = []
    run: list[int] = []
    for piece in [*pieces, b""]:
        if run and (not isinstance(piece, int) or piece != run[-1] + 1):
            writer.copy_workflows(old.source, spans[run[0]][0], spans[run[0] : run[-1] + 1])
            run = []
        if isinstance(piece, int):
            if texts:
                writer.workflow_lines(texts)
                texts = []
            run.append(piece)
        elif piece:
            texts.append(piece)
    if texts:
        writer.workflow_lines(texts)


# The first line of master_status.json (``status_file.Writer``'s layout): the first workflow's line follows it.
_OPEN_LINE = b'{"workflows":[\n'


class _Slow(Exception):
    """The changed workflows alone cannot tell this cycle's report (``_workflows_delta``): every kept
    contribution is gathered instead."""


# More changed answers than this and every kept workflow is gathered (each one's line is searched for them).
MOST_CHANGED_ANSWERS = 64


def _workflows_delta(
    ctx: StageContext,
    scan: parts.ScanLines,
    digests: Sequence[bytes],
    answers: answers_module.Answers,
    verify: Mapping[str, Any] | None,
    index: kept_index.Index,
    changed: frozenset[tuple[str | None, str]],
    now_text: str,
    old: kept_index.OldReport,
    target: Path,
    kept: list[dict[str, Any]],
    loaded: kept_whole.Loaded,
) -> tuple[list[bytes | int], list[tuple[int, int]], Again]:
    """``_workflows_again`` from the changed workflows alone: every other one's part of the whole (counts,
    page row, readiness history entry) is the kept whole's (``kept_whole``), less the parts of the workflows
    changed or gone, plus those of the workflows worked out now; the actions to make again are those whose
    workflows, seed or answer may differ (``kept_index.changed_actions``), gathered from the workflows the
    last report says needed them and those worked out now, in scan order. Return the workflows' lines (a kept
    one by its place: ``_write_workflows``), where the last report's are, and what ``_workflows_again``
    returns; raise _Slow when it cannot tell (kept workflows in another order)."""
    whole, kept_rows, kept_entries, spans, _ = loaded
    if not spans or spans[0][0] != len(_OPEN_LINE):
        raise _Slow("the index says not where the last report's lines are")
    delta = _Delta(index, kept_rows, kept_entries, (old, spans), now_text)
    suspects = _suspects(index, kept_rows, changed)
    changed_folders = {folder for folder, _ in changed}
    count_inactive = ctx.config.section("scan")["count_inactive_nodes"]
    in_order = None if scan.starts is not None else scan.lines()
    keep = delta.keep
    for position, place in enumerate(_places(index, digests)):
        line = next(in_order) if in_order is not None else None
        if place is not None and place not in suspects:
            keep(place)  # most workflows: as they were
            continue
        before = index.contribution(place) if place is not None else None
        if before is not None and kept_index.stands(before, changed, changed_folders):
            keep(place)  # type: ignore[arg-type]
            continue
        so_far = position - len(delta.reused)  # workflows worked out again so far
        if so_far > kept_index.MOST_CHANGED and 10 * so_far > len(digests):
            raise kept_index.NotIncremental("most workflows changed")
        scanned = scan.entry_at(position) if line is None else line[2] or scan.parse(line[0], line[1])
        found = index.place_of(scanned["path"]) if place is None or before is None else (place, before)
        past = {} if found is None else kept_index.history_of(found[1], index.head["now"])
        drift = verification.drift_ids_of(verify, scanned["workflow"])
        record = status_report.workflow_record(scanned, answers, count_inactive, past, drift)
        status_report.emit(record, now_text)
        delta.work_out(position, None if found is None else found[0], record, digests[position], target)
    gone = [index.contribution(place) for place in range(len(index.lines)) if place not in delta.reused]
    if len(gone) > kept_index.MOST_CHANGED and 10 * len(gone) > len(index.lines):
        raise kept_index.NotIncremental("most workflows changed")
    for contribution in gone:
        whole.add(contribution, -1)
    for contribution in delta.made.values():
        whole.add(contribution)
    dirty = kept_index.changed_actions(gone, delta.made.values(), changed)
    aggregate = status_report.Aggregate(answers)
    whole.fill(aggregate, delta.dirs, delta.rows)
    if [aggregate.has_disabled, aggregate.has_downloads] != list(index.head["flags"]):
        raise kept_index.NotIncremental("the install facts the commands need changed")
    _pending_again(aggregate, dirty, kept, delta, index)
    # The readiness history of the workflows worked out now is checked; the others' was when it was made.
    where = f"{ctx.state_dir / HISTORY} (about to be written)"
    artifacts.validate({"workflows": delta.history}, "report_history", where)
    aggregate.history_text = kept_whole.history_text(delta.entries, now_text)
    logger.debug("report: %d workflows worked out again, %d actions made again", len(delta.made), len(dirty))
    again = (aggregate, dirty, delta.lines, delta.dirs, len(delta.reused), (whole, delta.rows, delta.entries))
    return delta.written, spans, again


class _Delta:
    """The workflows of this cycle's report in scan order as ``_workflows_delta`` takes them: each kept one's
    parts from the kept index and whole, each changed one's worked out now."""

    def __init__(
        self,
        index: kept_index.Index,
        rows: list[kept_whole.Row],
        entries: list[kept_whole.Entry],
        old: tuple[kept_index.OldReport, list[tuple[int, int]]],
        now_text: str,
    ) -> None:
        self.index, self.kept_rows, self.kept_entries = index, rows, entries
        self.old, self.spans = old  # the last report, and where its workflows' lines are
        self.now_text = now_text
        self.dirs: dict[str, Any] = dict(index.head["dirs"])
        self.written: list[bytes | int] = []  # each workflow's line of master_status.json, or its kept place
        self.lines: list[bytes] = []  # of the index
        self.rows: list[kept_whole.Row] = []
        self.entries: list[kept_whole.Entry] = []
        self.places: list[int | None] = []  # each workflow's kept place when it stands
        self.made: dict[int, list[Any]] = {}  # the contributions worked out now, by scan position
        self.history: dict[str, Any] = {}  # their readiness history
        self.reused: set[int] = set()
        # The last kept place met: the workflows that stay keep their order (an action's seed is its first's).
        self.last = -1
        self.then = index.head["now"]  # when the last report was made

    def _in_order(self, place: int) -> None:
        if place <= self.last:
            raise _Slow("the kept workflows are in another order")
        self.last = place

    def keep(self, place: int) -> None:
        """Take the kept workflow at ``place`` as it was."""
        if place <= self.last:
            raise _Slow("the kept workflows are in another order")
        self.last = place
        self.reused.add(place)
        entry = self.kept_entries[place]
        if entry[1] and self.then != self.now_text:  # resolved: its last resolved time is now's, its line changed
            line = self.old.line_at(*self.spans[place])
            self.written.append(kept_index.reused_line(line, True, self.then, self.now_text))
        else:
            self.written.append(place)
        self.lines.append(self.index.lines[place])
        self.rows.append(self.kept_rows[place])
        self.entries.append(entry)
        self.places.append(place)

    def work_out(
        self, position: int, before: int | None, record: dict[str, Any], line_digest: bytes, target: Path
    ) -> None:
        """Take the workflow at scan ``position`` as ``record`` (emitted) says (``before``: its kept place)."""
        if before is not None:
            self._in_order(before)
        entry = record["entry"]
        self.written.append(kept_index.encode_workflow(entry, target))
        contribution = kept_index.contribution(record, self.index.seeds)
        missing = status_report.missing_of(record)
        self.history[entry["path"]] = {"last_resolved_at": entry["last_resolved_at"], "missing": missing}
        self.lines.append(kept_index.line_of(line_digest, contribution))
        self.rows.append(kept_whole.row_of(contribution))
        self.entries.append(kept_whole.entry_of(contribution, missing))
        self.places.append(None)
        self.made[position] = contribution
        if kept_index.add_dirs(self.dirs, record) is None:
            raise kept_index.NotIncremental("a folder type was looked for in other places")


def _places(index: kept_index.Index, digests: Sequence[bytes]) -> list[int | None]:
    """Return ``kept_index.walk``'s kept place of each scan line (or None): looked up at once when no two lines
    have the same digest (else each kept place is taken once, in order)."""
    places = list(map(index.positions.get, digests))
    found = [place for place in places if place is not None]
    if len(set(found)) == len(found):
        return places
    return [place for _, place in kept_index.walk(index, digests)]


def _suspects(
    index: kept_index.Index, rows: Sequence[kept_whole.Row], changed: frozenset[tuple[str | None, str]]
) -> set[int]:
    """Return the places of the kept workflows that may not stand (``kept_index.stands``): those that missed
    something new, and those whose line holds the key of a changed answer (each is parsed to tell)."""
    suspects = {place for place, row in enumerate(rows) if row[3]}
    if len(changed) > MOST_CHANGED_ANSWERS:
        raise _Slow("many answers changed")
    if changed:
        for needle in {orjson.dumps(lookup) for _, lookup in changed}:  # a few: each one's search is at C speed
            suspects.update([place for place, line in enumerate(index.lines) if needle in line])
    return suspects


def _pending_again(
    aggregate: status_report.Aggregate,
    dirty: set[str],
    kept: list[dict[str, Any]],
    delta: _Delta,
    index: kept_index.Index,
) -> None:
    """Gather the actions to make again (``dirty``) into ``aggregate``, in scan order, from the workflows worked
    out now and those that needed them in the last report (``kept``: its actions, ``kept_actions.slim``),
    whose contributions alone are parsed."""
    needed = {name for action in kept if action["id"] in dirty for name in action["workflows"]}
    names = kept_index.file_names(dirty)
    for position, row in enumerate(delta.rows):
        contribution = delta.made.get(position)
        place = delta.places[position]
        if contribution is None and place is not None and row[0] in needed:
            contribution = index.contribution(place)
        if contribution is not None:
            kept_index.pending(aggregate, contribution, index.seeds.table, dirty, names)


def _workflows_gathered(
    ctx: StageContext,
    scan: parts.ScanLines,
    digests: Sequence[bytes],
    answers: answers_module.Answers,
    verify: Mapping[str, Any] | None,
    index: kept_index.Index,
    changed: frozenset[tuple[str | None, str]],
    now_text: str,
    old_lines: list[bytes],
    target: Path,
) -> tuple[list[bytes], Again]:
    """``_workflows_again`` with every kept contribution parsed and gathered."""
    kept_head = index.head
    count_inactive = ctx.config.section("scan")["count_inactive_nodes"]
    drift = verification.drift_ids(verify)
    dirs: dict[str, Any] = dict(kept_head["dirs"])
    aggregate = status_report.Aggregate(answers)
    lines: list[bytes] = []
    # Every workflow's contribution in scan order, gathered once the actions to make again are known.
    contributions: list[list[Any]] = []
    dirty: set[str] = set()
    reused: set[int] = set()
    # The changed lines alone are read again, where ``digests`` found them (else every line, in order).
    in_order = None if scan.starts is not None else scan.lines()
    changed_folders = {folder for folder, _ in changed}
    # Each workflow's line of master_status.json, in scan order.
    written: list[bytes] = []
    for position, place in kept_index.walk(index, digests):
        line = next(in_order) if in_order is not None else None
        kept = None
        if place is not None:
            kept = index.contribution(place)
            if kept_index.stands(kept, changed, changed_folders):
                reused.add(place)
                written.append(kept_index.reused_line(old_lines[place], kept[3], kept_head["now"], now_text))
                lines.append(index.lines[place])
                contributions.append(kept)
                continue
        if position - len(reused) > kept_index.MOST_CHANGED and 10 * (position - len(reused)) > len(digests):
            raise kept_index.NotIncremental("most workflows changed")
        scanned = scan.entry_at(position) if line is None else line[2] or scan.parse(line[0], line[1])
        before = kept if kept is not None else index.find(scanned["path"])
        past = {} if before is None else kept_index.history_of(before, kept_head["now"])
        record = status_report.workflow_record(
            scanned, answers, count_inactive, past, drift.get(scanned["workflow"], ())
        )
        status_report.emit(record, now_text)
        written.append(kept_index.encode_workflow(record["entry"], target))
        made = kept_index.contribution(record, index.seeds)
        lines.append(kept_index.line_of(digests[position], made))
        dirty |= kept_index.action_ids(made)
        if kept_index.add_dirs(dirs, record) is None:
            raise kept_index.NotIncremental("a folder type was looked for in other places")
        contributions.append(made)
    gone = [place for place in range(len(index.lines)) if place not in reused]
    if len(gone) > kept_index.MOST_CHANGED and 10 * len(gone) > len(index.lines):
        raise kept_index.NotIncremental("most workflows changed")
    for place in gone:
        dirty |= kept_index.action_ids(index.contribution(place))
    names = kept_index.file_names(dirty)
    whole = kept_whole.Whole.empty(status_report.READINESS)
    for contribution in contributions:
        kept_index.gather(aggregate, contribution, dirs, index.seeds.table, now_text, dirty, names)
        whole.add(contribution)
    if [aggregate.has_disabled, aggregate.has_downloads] != list(kept_head["flags"]):
        raise kept_index.NotIncremental("the install facts the commands need changed")
    rows = list(map(kept_whole.row_of, contributions))
    entries = [kept_whole.entry_of(c, kept_index.history_missing(c)) for c in contributions]
    return written, (aggregate, dirty, lines, dirs, len(reused), (whole, rows, entries))


# The fields of an action whose values thousands of actions share (a kind, a folder type, a search's reason).
_SHARED = ("kind", "folder", "detail", "source", "evidence", "note")


def _shared(action: dict[str, Any], shared: dict[Any, Any]) -> dict[str, Any]:
    """Return ``action`` (parsed from its line) holding one string for each value many actions share, and
    for each workflow's name, as the actions the full report makes do (tens of thousands at 8,000 workflows)."""
    one = shared.setdefault
    for name in _SHARED:
        value = action.get(name)
        if value is not None:
            action[name] = one(value, value)
    names = action["workflows"]
    action["workflows"] = list(map(one, names, names))
    return action


def _actions_again(
    aggregate: status_report.Aggregate,
    dirty: set[str],
    verify: Mapping[str, Any] | None,
    old: kept_index.OldReport,
    target: Path,
    kept: kept_actions.Kept,
    facts: commands.InstallFacts,
) -> tuple[list[dict[str, Any]], Iterator[status_file.Block]]:
    """Return the ranked actions and their lines (in blocks: ``status_file.Writer.action_blocks``): the actions
    of the workflows worked out again (``dirty``) made, validated and encoded again, and ranked among every
    other one, whose line is read from ``old`` (every action it lists, in their ranked order, which they keep
    between them) and parsed for the page (or taken from ``kept``: ``_merged``). The list holds the actions
    once their lines are all read."""
    made = [aggregate.action(aid, facts) for aid in dirty if aid in aggregate.pending]
    if verify:
        verification.add_variants(made, verify)
    made.sort(key=_rank)
    if kept.actions is not None:
        return _merged(kept, made, dirty, old, target)
    ranked: list[dict[str, Any]] = []

    def batches() -> Iterator[status_file.Block]:
        new = iter(made)
        coming = next(new, None)
        shared: dict[Any, Any] = {}
        loads, keep = orjson.loads, ranked.append
        for lines in old.action_batches():
            out: list[bytes] = []
            for line in lines:
                action = loads(line)
                if action["id"] in dirty:
                    continue  # made again (or gone)
                # Ranked by ``_rank`` (blocks first: a kept action that blocks more goes before, no more asked).
                while coming is not None and (
                    coming["blocks"] > action["blocks"]
                    or (coming["blocks"] == action["blocks"] and _rank(coming) < _rank(action))
                ):
                    keep(coming)
                    out.append(status_file.part(coming, "action", f"{target} (action {coming['id']})"))
                    coming = next(new, None)
                keep(_shared(action, shared))
                out.append(line)
            yield out
        tail = []
        while coming is not None:
            ranked.append(coming)
            tail.append(status_file.part(coming, "action", f"{target} (action {coming['id']})"))
            coming = next(new, None)
        yield tail

    return ranked, batches()


def _merged(
    kept: kept_actions.Kept, made: list[dict[str, Any]], dirty: set[str], old: kept_index.OldReport, target: Path
) -> tuple[list[dict[str, Any]], Iterator[status_file.Block]]:
    """``_actions_again`` given the last report's actions as its page was made of them (``kept.actions``, in
    their ranked order, one for each of ``old``'s action lines, each ``kept_actions.slim``): the ranked actions
    are those not made again with ``made`` placed by rank among them, and their lines are ``old``'s lines, the
    lines of ``dirty`` actions left out and ``made``'s put in, each list of lines that none of them touches
    passed on whole. The kept actions the page shows alone are completed from their lines as those are read
    (``kept_actions.complete``; the list holds them whole once its lines are all read). The change is noted in
    ``kept`` (for ``kept_actions.save``)."""
    actions = kept.actions or []
    gone = {place for place, action in enumerate(actions) if action["id"] in dirty}
    places_kept: Sequence[int] = [p for p in range(len(actions)) if p not in gone] if gone else range(len(actions))
    stays = [actions[place] for place in places_kept] if gone else actions
    ranked, places = kept_actions.merge(stays, made)
    kept.change = ([actions[place]["id"] for place in sorted(gone)], made)
    # The same places among ``old``'s lines: the made actions to write before each line (or after the last).
    before: dict[int, list[dict[str, Any]]] = {}
    for action, place in zip(made, places, strict=True):
        before.setdefault(places_kept[place] if place < len(stays) else len(actions), []).append(action)
    touched = sorted(gone | before.keys())
    fill = _shown_alone(ranked, places, places_kept)
    fill_at = sorted(fill)

    def text(action: dict[str, Any]) -> bytes:
        return status_file.part(action, "action", f"{target} (action {action['id']})")

    lines_at = old.action_lines
    if lines_at is not None and len(lines_at[1]) == len(actions):
        return ranked, _copied(old, lines_at, fill, touched, gone, before, text)

    def batches() -> Iterator[status_file.Block]:
        position, next_touched, next_fill = 0, 0, 0
        for block, count in old.action_blocks():
            end = position + count
            lines = None
            while next_fill < len(fill_at) and fill_at[next_fill] < end:
                lines = lines or block.split(b",\n")  # a line holds no raw newline
                kept_actions.complete(fill[fill_at[next_fill]], lines[fill_at[next_fill] - position])
                next_fill += 1
            if next_touched == len(touched) or touched[next_touched] >= end:
                yield lines or block.split(b",\n")  # no line left out or put in here: written as read
                position = end
                continue
            out: list[bytes] = []
            for line in lines or block.split(b",\n"):
                out += [text(action) for action in before.get(position, ())]
                if position not in gone:
                    out.append(line)
                position += 1
            while next_touched < len(touched) and touched[next_touched] < end:
                next_touched += 1
            yield out
        if position != len(actions):
            raise kept_index.NotIncremental(f"{target}: not the report its actions were kept with")
        yield [text(action) for action in before.get(position, ())]

    return ranked, batches()


def _copied(
    old: kept_index.OldReport,
    lines_at: tuple[int, list[int]],
    fill: Mapping[int, dict[str, Any]],
    touched: list[int],
    gone: set[int],
    before: Mapping[int, list[dict[str, Any]]],
    text: Callable[[dict[str, Any]], bytes],
) -> Iterator[status_file.Block]:
    """``_merged``'s lines when the index says where the last report's action lines are (``lines_at``: where
    they begin, each one's length): each run of lines none of the changes touches copied, not read (the
    kept actions the page shows alone, ``fill``, completed from their lines read alone, now)."""
    start, lengths = lines_at
    # Each line's offset: the one before's, its length and its comma and newline (ten thousand: no call each).
    starts = list(itertools.accumulate(map((2).__add__, lengths[:-1]), initial=start))
    if old.line_at(starts[-1] + lengths[-1], 3) != b"\n],":
        raise kept_index.NotIncremental(f"{old.path}: not the report its actions were kept with")
    for place, action in fill.items():
        kept_actions.complete(action, old.line_at(starts[place], lengths[place]))
    logger.debug("report: the last report's action lines copied where %d changes leave them", len(touched))

    def blocks() -> Iterator[status_file.Block]:
        at = 0
        for place in touched:
            if place > at:
                yield status_file.Copy(old.source, starts[at], lengths[at:place])
            yield [text(action) for action in before.get(place, ())]
            at = place + 1 if place in gone else place
        if at < len(lengths):
            yield status_file.Copy(old.source, starts[at], lengths[at:])

    return blocks()


def _shown_alone(
    ranked: list[dict[str, Any]], places: Sequence[int], places_kept: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Return the kept actions of ``ranked`` that the page shows alone (``markdown.alone``) by their places among
    the last report's action lines: ``ranked`` is the kept actions at ``places_kept`` with the made ones put in
    at ``places`` (``kept_actions.merge``), and a made action is whole already."""
    made_at = [place + before for before, place in enumerate(places)]  # each made action's place in ``ranked``
    found: dict[int, dict[str, Any]] = {}
    for at in markdown.alone(ranked):
        made_before = bisect.bisect_left(made_at, at)
        if made_before < len(made_at) and made_at[made_before] == at:
            continue
        found[places_kept[at - made_before]] = ranked[at]
    return found


_rank = kept_actions.rank


def findings(
    ctx: StageContext,
    scan_head: Mapping[str, Any],
    aggregate: status_report.Aggregate,
    answers: answers_module.Answers | None,
    verify: Mapping[str, Any] | None,
    outcome: StageOutcome,
    writer: status_file.Writer,
    unavailable: list[dict[str, Any]],
    models: tuple[list[dict[str, str]], list[dict[str, Any]]] | None = None,
    made: Any = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Write the ranked actions and the small keys to ``writer`` (its workflows written; the caller settles
    it: ``status_file.Writer.settle``); return the actions
    and the document's head (both lists empty), for the page. ``answers`` is None when search.json could not
    be read; ``models``: ``model_findings`` when the caller has them; ``made``: a function of the install
    facts returning the ranked actions and their lines, when the caller makes them (``incremental``)."""
    state = ctx.state_dir
    now_text = ctx.now().isoformat(timespec="seconds")
    summary = aggregate.summary()
    facts = install_facts.gather(ctx, scan_head, aggregate.has_disabled, aggregate.has_downloads)
    # Written before the head is made of them: ``made``'s actions are whole once their lines are written.
    if made is not None:
        ranked, batches = made(facts)
        writer.action_blocks(batches)
    else:
        # Ranked once: with the drifted files' actions when verify.json has findings.
        on_disk = verification.variants(verify) if verify else None
        ranked = aggregate.actions(facts, rank=not verify, variants=on_disk)
        if verify:
            ranked = verification.merge_actions(ranked, verify, with_variants=True)
        writer.actions(status_file.parts(ranked, "action", lambda a: f"{writer.path} (action {a['id']})"))
    runs = StateManager(state).stage_runs(ctx.cycle_id)
    cycle_errors = [e for r in runs for e in r["errors"]] + outcome.errors
    broken, limits = models if models is not None else model_findings(state)
    model_list = answers.model_list if answers is not None else None
    head = {
        "generated_at": now_text,
        "cycle_id": ctx.cycle_id,
        "comfyui_root": scan_head["comfyui_root"],
        "demo": scan_head["demo"],
        "offline": answers is not None and answers.offline,
        "manager_maps": maps_used(scan_head["node_map"], model_list, ctx.config.comfyui_root),
        "stale": _fresh_stale(unavailable, ctx.cycle_id, now_text),
        "summary": summary,
        "action_totals": status_report.action_totals(ranked),
        "actions": [],
        "search_now": {"next_cycle_at": facts.next_cycle_at, "commands": commands.search_commands(facts)[0]},
        "workflows": [],
        "model_dirs": aggregate.model_dirs,
        "model_folder_limits": limits,
        **({"verification": verification.block(verify)} if verify else {}),
        "recent_intake": recent_intake(state, ctx.config.section("report")["recent_intake"]),
        "broken_models": broken,
        "cycle": {
            "cycle_id": ctx.cycle_id,
            "stages": [{k: r[k] for k in ("stage", "ok", "duration_s", "detail", "errors", "counts")} for r in runs],
            "errors": cycle_errors,
            "findings": [e for r in runs for e in r.get("findings", [])],
        },
    }
    writer.finish(head, settle=False)  # the caller settles it (``status_file.Writer.settle``)
    return ranked, head


def read_history(state: Path) -> dict[str, Any]:
    """Return report_history.json's workflows (path -> last resolved, what it missed), or none when it is
    missing or broken (logged: the readiness history starts afresh)."""
    try:
        history = artifacts.read_optional(state / HISTORY, "report_history") or {"workflows": {}}
    except ArtifactError as exc:
        logger.warning("%s; readiness history starts afresh", exc)
        history = {"workflows": {}}
    workflows: dict[str, Any] = history["workflows"]
    return workflows


def write_history(
    state: Path, now: dict[str, Any], before: Mapping[str, Any], kept: set[str], text: bytes | None = None
) -> None:
    """Write report_history.json for the next cycle: per workflow reported, when it was last resolvable and
    what it misses now; the workflows of an unavailable folder (``kept``: not in this report) keep theirs.
    ``text``: the file's text when the caller made it (``kept_whole.history_text``, its new entries checked)."""
    if text is not None:
        artifacts.atomic_write_bytes(state / HISTORY, text, b"\n")
        return
    for path in kept - now.keys():
        if path in before:
            now[path] = before[path]
    artifacts.write(state / HISTORY, {"workflows": now}, "report_history", indent=None)


class WorkflowPass:
    """One pass over scan.json's workflows: what a workflow's record is made with, and where it goes."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("answers", "count_inactive", "digests", "drift", "history", "index", "lines_seen", "now_text", "scan")

    scan: parts.ScanLines
    answers: answers_module.Answers
    drift: Mapping[str, Sequence[str]]
    history: Mapping[str, Any]
    count_inactive: bool
    now_text: str
    # Each line's ``parts.line_digest`` in order, when they were worked out before (else worked out here).
    digests: Sequence[bytes] | None
    # Given each line's digest in order (``findings_key``).
    lines_seen: Any
    # What the kept index (``kept_index``) takes of each workflow.
    index: kept_index.Builder

    def __init__(
        self,
        scan: parts.ScanLines,
        answers: answers_module.Answers,
        drift: Mapping[str, Sequence[str]],
        history: Mapping[str, Any],
        count_inactive: bool,
        now_text: str,
        digests: Sequence[bytes] | None = None,
        lines_seen: Any = None,
        index: kept_index.Builder | None = None,
    ) -> None:
        self.scan, self.answers, self.drift, self.history = scan, answers, drift, history
        self.count_inactive, self.now_text, self.digests = count_inactive, now_text, digests
        self.lines_seen = hashlib.blake2b(digest_size=16) if lines_seen is None else lines_seen
        self.index = kept_index.Builder() if index is None else index

    def run(self, store: parts.PartStore, aggregate: status_report.Aggregate, writer: status_file.Writer) -> int:
        """Add each workflow to ``aggregate`` and write its entry to ``writer``; return how many there are. With
        each line's digest known and the scan's record of scan.json (``parts.Entries``), only the entries of
        the workflows whose records are not kept are read, from what the scan primed when it did; else scan.json
        is read line by line."""
        digests = self.digests if self.digests is not None else self.scan.primed_digests()
        if digests is not None and self.scan.recorded is not None:
            with parts.Entries(self.scan, status_report.PARTS_TAG) as entries:
                for position, line_digest in enumerate(digests):
                    self._add(store, aggregate, writer, line_digest, entries.at, position)
            return len(digests)
        return self._by_line(store, aggregate, writer, digests)

    def _by_line(
        self,
        store: parts.PartStore,
        aggregate: status_report.Aggregate,
        writer: status_file.Writer,
        digests: Sequence[bytes] | None,
    ) -> int:
        """``run`` reading scan.json line by line (and working out each line's digest, unless ``digests`` gives
        them); return how many workflows there are."""
        count = 0
        known = iter(digests) if digests is not None else None
        worked_out: list[bytes] = []
        for number, line, entry in self.scan.lines():
            line_digest = next(known, None) if known is not None else None
            if line_digest is None:
                line_digest = parts.line_digest(line)
                worked_out.append(line_digest)
            self._add(store, aggregate, writer, line_digest, self._entry, (number, line, entry))
            count += 1
        if digests is None:  # the next report finds them through the scan's record
            self.scan.keep_keys(worked_out)
        return count

    def _entry(self, found: tuple[int, bytes, dict[str, Any] | None]) -> Mapping[str, Any]:
        """Return the entry of a line ``ScanLines.lines`` yields (parsed now, unless it was)."""
        number, line, entry = found
        return entry if entry is not None else self.scan.parse(number, line)

    def _add(
        self,
        store: parts.PartStore,
        aggregate: status_report.Aggregate,
        writer: status_file.Writer,
        line_digest: bytes,
        read: Callable[[Any], Mapping[str, Any]],
        where: Any,
    ) -> None:
        """Add the workflow of the scan line ``line_digest``: its kept record, else one made of its entry,
        ``read(where)`` (read only then)."""
        self.lines_seen.update(line_digest)
        record, deps = self._kept(store, line_digest)
        fresh = record is None
        if record is None:
            scanned = read(where)
            drift_ids = self.drift.get(scanned["workflow"], ())
            past = self.history.get(scanned["path"], {})
            record = status_report.workflow_record(scanned, self.answers, self.count_inactive, past, drift_ids)
            deps = store.depends(record, self.answers, drift_ids)
        store.keep(line_digest, deps, record if fresh else None)
        workflow = aggregate.add(record, self.now_text)
        self.index.add(line_digest, record, aggregate.rows[-1], aggregate.history[workflow["path"]]["missing"])
        writer.workflow(
            status_file.part(workflow, "workflow", lambda: f"{writer.path} (workflow {workflow['path']})")
            if fresh
            else status_file.encode(workflow)
        )

    def _kept(self, store: parts.PartStore, line_digest: bytes) -> tuple[dict[str, Any] | None, bytes]:
        """Return the record kept for a line and its dependencies' digest, or (None, b"") when there is none
        or it was made of other answers, drift or history."""
        record = store.get(line_digest)
        if record is None:
            return None, b""
        wf = record["entry"]
        deps = store.depends(record, self.answers, self.drift.get(wf["workflow"], ()))
        if store.matches(line_digest, deps) and status_report.history_holds(record, self.history.get(wf["path"], {})):
            return record, deps
        return None, b""


def build_workflows(ctx: StageContext, workflows: WorkflowPass, writer: status_file.Writer) -> status_report.Aggregate:
    """Write every workflow of scan.json to ``writer`` (in scan order) and return their Aggregate: each
    workflow's record reused from ``state/report_parts.pack`` when its scan line and what it depends on are
    unchanged, else made now (its line parsed and validated, its entry validated)."""
    settings = {"format": INPUTS_FORMAT, "count_inactive": workflows.count_inactive}
    store = parts.PartStore(ctx.state_dir / parts.FILE, settings)
    aggregate = status_report.Aggregate(workflows.answers)
    try:
        count = workflows.run(store, aggregate, writer)
    except BaseException:
        store.discard()
        raise
    store.save()
    logger.debug("report: %d of %d workflows reused from %s", store.reused, count, store.path)
    return aggregate


# Bump when the report made of the same inputs changes, so the next cycle builds it again.
INPUTS_FORMAT = 5
# What the page's head and tail are rendered from: the small keys of the document.
HEAD_KEYS = ("summary", "verification", "comfyui_root", "demo", "offline", "model_folder_limits", "manager_maps")


def index_outputs(ctx: StageContext) -> list[Path]:
    """Return the outputs the kept index (``kept_index``) builds on and must find as the report left them:
    master_status.json and the readiness history (not the page, which a quiet cycle renders again)."""
    return [ctx.config.reports_dir / "master_status.json", ctx.state_dir / HISTORY]


def output_paths(ctx: StageContext) -> list[Path]:
    """Return the files the report writes and a reuse must find as they were written."""
    reports = ctx.config.reports_dir
    return [reports / "master_status.json", reports / "master_status.md", ctx.state_dir / HISTORY]


def findings_basis(
    ctx: StageContext,
    scan_head: Mapping[str, Any],
    unavailable: list[dict[str, Any]],
    verify: Any,
    searched: bytes | None,
) -> bytes:
    """Return what the findings (every workflow entry and action, the headline) are made of besides scan.json's
    lines: search.json's answers (``answers.mark``), what the report shows of verify.json, the install facts
    the commands name, scan.json's head, and the settings; not the intake log nor the clock (the page's
    tail, which ``refresh_page`` renders again). ``searched``: ``answers.mark`` of search.json."""
    return findings_text(basis_parts(ctx, scan_head, unavailable, verify), searched)


def findings_text(made_of: Mapping[str, Any], searched: bytes | None) -> bytes:
    """Return ``findings_basis`` of what ``basis_parts`` returned (``made_of``)."""
    return orjson.dumps({**made_of, "search": (searched or b"").decode("ascii")}, option=orjson.OPT_SORT_KEYS)


def kept_index_key(made_of: Mapping[str, Any]) -> str:
    """Return what the kept index (``kept_index``) must have been made with: everything the findings are made
    of besides scan.json's lines and search.json's answers (``basis_parts``), and the index's format."""
    document = {"made_of": dict(made_of), "format": kept_index.FORMAT}
    # sha256, not blake2b: a megabyte with verify.json's findings, and sha256 runs on the processor's instructions.
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def basis_parts(
    ctx: StageContext, scan_head: Mapping[str, Any], unavailable: list[dict[str, Any]], verify: Any
) -> dict[str, Any]:
    """Return what ``findings_basis`` holds besides search.json's answers."""
    state = ctx.state_dir
    return {
        "verify": {k: (verify or {}).get(k) for k in ("drift", "alternatives", "budget_bytes")},
        # What is verified so far, not the work of the run that wrote it (hashed_files, hash_seconds, ...).
        "verified": {k: v for k, v in ((verify or {}).get("progress") or {}).items() if not k.startswith("hash")},
        # The search writes the download queue every time it runs: what the commands take from it, not its stat.
        "targets": sorted(install_facts.download_targets(state).items(), key=str),
        "files": {n: stage_inputs.stat_key(state / n) for n in ("model_cache.json", "custom_nodes_cache.json")},
        "scan": {k: scan_head[k] for k in ("comfyui_root", "demo", "node_map")},
        "settings": report_settings(ctx, unavailable),
    }


def findings_key(lines_seen: Any, basis: bytes) -> str:
    """Return the digest of what the findings are made of: each scan.json line as ``parts.line_digest`` sees it
    (``lines_seen``, a blake2b given them in order) and ``basis`` (the sha256 of ``findings_basis``)."""
    h = lines_seen.copy()
    h.update(basis)
    return str(h.hexdigest())


def findings_recorded(ctx: StageContext, last: Mapping[str, Any]) -> bool:
    """Return True when the last report recorded what its findings were made of (``findings_key``) and its
    outputs are as it wrote them: then ``unchanged_findings`` may keep them."""
    extra = last.get("extra") or {}
    if "findings" not in extra or last["valid_until"] is not None:
        return False
    return all(last["outputs"].get(str(p)) == stage_inputs.stat_key(p) for p in output_paths(ctx))


def unchanged_findings(digests: Sequence[bytes], basis: bytes, last: Mapping[str, Any]) -> bool:
    """Return True when the last report's findings (``findings_recorded``) were made of what this cycle's
    would be: scan.json's lines with these ``parts.line_digest`` digests, in order, and ``basis``. Then they
    stand as they are, and a workflow edited without changing what it needs (a node's title) costs a read of
    scan.json, not a report."""
    lines_seen = hashlib.blake2b(digest_size=16)
    for line_digest in digests:
        lines_seen.update(line_digest)
    return bool(findings_key(lines_seen, basis) == last["extra"]["findings"])


# The install facts the report's commands name: download targets, disabled packs, broken files and walk limits.
FACT_FILES = ("model_cache.json", "custom_nodes_cache.json", "download_queue.json")


def report_settings(ctx: StageContext, unavailable: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the settings the report is made with (part of both fingerprints)."""
    return {
        "format": INPUTS_FORMAT,
        "report": ctx.config.section("report"),
        "count_inactive": ctx.config.section("scan")["count_inactive_nodes"],
        "offline": ctx.config.offline,
        "home": str(ctx.config.home),
        "layers": [str(layer) for layer in ctx.config.layers],
        "python": install_facts.comfyui_python(Path(ctx.config.comfyui_root)),
        "unavailable": unavailable,
    }


def inputs_fingerprint(ctx: StageContext, unavailable: list[dict[str, Any]]) -> str:
    """Return a hash of what the report is built from: the artifacts it reads (each rewritten only when its
    content changes, so its stat stands for it), the install facts its commands name, and the settings. What
    changes every cycle (the clock, this cycle's stage runs, the next cycle's time) is left out: a reuse
    renders it again (``refresh_page``)."""
    state = ctx.state_dir
    files = [state / n for n in ("scan.json", "search.json", "verify.json", *FACT_FILES, "intake_log.jsonl")]
    return stage_inputs.fingerprint(files, report_settings(ctx, unavailable))


def model_findings(state: Path) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Return the installed safetensors files that are cut short or unreadable, and the model folders whose
    walk the cache stage cut short: the last report's when model_cache.json is as it was then
    (``kept_model_findings``), else every file's header read again and model_cache.json read
    (``broken_models.Check.findings``, here in this process)."""
    kept = kept_model_findings(state)
    return kept if kept is not None else broken_models.Check(state, start=False).findings()


def start_header_check(state: Path) -> bool:
    """Start the header check of every installed file now, for this cycle's report to take
    (``broken_models.start_early``), when that report will run it in a process of its own: model_cache.json is
    not the one the last report checked (``kept_model_findings``) and lists enough files; return whether it
    started."""
    if kept_model_findings(state) is not None or not broken_models.worth_a_process(state):
        return False
    return broken_models.start_early(state)


def kept_model_findings(state: Path) -> tuple[list[dict[str, str]], list[dict[str, Any]]] | None:
    """Return the last report's broken files and walk limits when model_cache.json is as it was then (it holds
    every file's size and is rewritten when one changes), else None."""
    last = (stage_inputs.previous(state, "report") or {}).get("extra") or {}
    now = stage_inputs.stat_key(state / "model_cache.json")
    broken, limits = last.get("broken_models"), (last.get("head") or {}).get("model_folder_limits")
    if now is not None and last.get("broken_for") == now and isinstance(broken, list) and isinstance(limits, list):
        return list(broken), list(limits)
    return None


def page_parts(document: dict[str, Any], parts: list[list[str]]) -> dict[str, Any]:
    """Return what a later cycle needs to render the page again without the findings: the document's small
    keys, where the findings' part lies in the page (character offsets), when and in which cycle they were
    computed, and how often the part names the next cycle's time (a search waits for it): a later cycle
    puts its own time there. ``reuse`` is False when those words are not found that many times."""
    due = document["search_now"]["next_cycle_at"]
    waiting = {(a["kind"], a["detail"]) for a in document["actions"] if a["kind"] in ("search", "retry")}
    body = "\n".join(parts[1])
    due_count = len(waiting) if due else 0
    return {
        "head": {k: document[k] for k in HEAD_KEYS if k in document},
        "body": body_span(parts[0], parts[1]),
        "next_cycle_at": due,
        "due_count": due_count,
        "computed": {"cycle_id": document["cycle_id"], "at": document["generated_at"]},
        "broken_models": document["broken_models"],
        # Reusable when the next cycle's time is all that changes in the findings' part, in words we can find.
        "reuse": bool(parts[1]) and (body.count(due_phrase(due)) == due_count if due else True),
    }


def due_phrase(due: str | None) -> str:
    """Return the words the page says the next cycle's time in (``markdown.search_item``)."""
    return markdown.due_words(due) if due else "\0"


def body_span(head: list[str], body: list[str]) -> list[int]:
    """Return [start, end): where the lines ``body`` lie in the page ``markdown.join_parts`` makes of
    ``head``, ``body`` and a tail (both non-empty)."""
    start = len("\n".join(head)) + 1
    return [start, start + len("\n".join(body))]


def refresh_page(
    ctx: StageContext, recorded: Mapping[str, Any], wanted: str, now_text: str, outcome: StageOutcome
) -> bool:
    """Render master_status.md again for this cycle from the last page's findings (kept as they were) and
    this cycle's clock, stage runs and recent intake; leave master_status.json and the readiness history as
    they are (their findings did not change). Return False, writing nothing, when the last page cannot be
    reused that way (the full report is then built)."""
    extra = recorded.get("extra") or {}
    if not extra.get("reuse"):
        return False
    page_path = ctx.config.reports_dir / "master_status.md"
    try:
        page = page_path.read_text(encoding="utf-8")
    except OSError:
        return False
    start, end = extra["body"]
    runs = StateManager(ctx.state_dir).stage_runs(ctx.cycle_id)
    document = {
        **extra["head"],
        "generated_at": now_text,
        "cycle_id": ctx.cycle_id,
        "stale": None,
        **({"computed": extra["computed"]} if "computed" in extra else {}),
        "recent_intake": recent_intake(ctx.state_dir, ctx.config.section("report")["recent_intake"]),
        "cycle": {
            "cycle_id": ctx.cycle_id,
            "stages": [{k: r[k] for k in ("stage", "ok", "duration_s", "detail", "errors", "counts")} for r in runs],
            "errors": [e for r in runs for e in r["errors"]],
            "findings": [e for r in runs for e in r.get("findings", [])],
        },
    }
    interval = ctx.config.section("schedule")["interval_minutes"]
    due = install_facts.next_cycle_at(ctx.state_dir, ctx.now(), interval)
    body = page[start:end]
    if extra["next_cycle_at"]:
        if body.count(due_phrase(extra["next_cycle_at"])) != extra.get("due_count"):
            return False
        body = body.replace(due_phrase(extra["next_cycle_at"]), due_phrase(due))
    head, tail = markdown.header(document), markdown.tail(document)
    text = markdown.join_parts([head, [body], tail])
    artifacts.atomic_write_text(page_path, text)
    outcome.counts = dict(recorded["counts"])
    outcome.detail = recorded["detail"]
    kept = {**extra, "body": body_span(head, body.split("\n")), "next_cycle_at": due}
    stage_inputs.record(
        ctx.state_dir, "report", ctx.cycle_id, wanted, output_paths(ctx), None, outcome.counts, outcome.detail, kept
    )
    logger.info(
        "report: nothing changed since cycle %s: %s; page refreshed -> %s",
        recorded["cycle_id"],
        outcome.detail,
        page_path,
    )
    return True


def _fresh_stale(unavailable: list[dict[str, Any]], cycle_id: str, now_text: str) -> dict[str, Any] | None:
    """Return the ``stale`` object of a report written while folders are unavailable (no last one to keep)."""
    reason = availability.stale_reason(unavailable)
    return None if reason is None else staleness.stale_block(reason, unavailable, cycle_id, now_text)


def _write_stale(report: dict[str, Any], reports: Path, outcome: StageOutcome) -> StageOutcome:
    """Write the last report again, marked stale; return ``outcome`` saying so."""
    head = {**report, "actions": [], "workflows": []}
    encoded = {k: [status_file.encode(item) for item in report[k]] for k in status_file.LISTS}
    status_file.write(reports / "master_status.json", head, encoded["workflows"], encoded["actions"])
    artifacts.atomic_write_text(reports / "master_status.md", markdown.render(report))
    outcome.counts = {k: v for k, v in report["summary"].items() if isinstance(v, int)}
    outcome.detail = f"kept the report of {report['generated_at']}, marked stale: {report['stale']['reason']}"
    logger.info("report: %s -> %s", outcome.detail, reports / "master_status.md")
    return outcome
