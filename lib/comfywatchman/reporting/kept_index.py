"""The report's running totals kept between cycles, so a cycle where a few workflows changed costs what changed.

``state/report_index.pack`` keeps, after each report built in full or from it, per workflow in scan order the
digest of its scan.json line and its contribution to the whole (``contribution``: its readiness, the actions
it needs with what it would seed them with, its page row and readiness history), the digest of each search
answer those workflows depend on, and the actions in the order master_status.json lists them with what they
are ranked by. A later report whose other inputs are the same (``key``: everything ``findings_basis`` holds
besides the search's answers) works out again only the workflows whose line, answers or history changed
(``Increment``), gathers the whole again from the kept contributions (in scan order, so each action keeps the
seed of the first workflow that needs it), builds again only the actions those workflows needed before or
need now, and copies every other workflow and action line of the last master_status.json as it was (a
resolved workflow's ``last_resolved_at`` set to now). It is a cache, safe to lose: when it is missing,
broken, made from other inputs, or the report's outputs are not as it left them, the report is built in full.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import stage_inputs
from comfywatchman.reporting import markdown, status_file, status_report
from comfywatchman.reporting.answers import Answers, key
from comfywatchman.reporting.parts import ScanLines

logger = logging.getLogger(__name__)

FILE = "report_index.pack"
# Bump when what a contribution holds or how the whole is gathered from it changes.
FORMAT = 1
_OPEN = b'{"workflows":['
_BETWEEN = b'],"actions":['


class NotIncremental(Exception):
    """The report cannot be made from the kept index this cycle (the caller builds it in full)."""


class Seeds:
    """The distinct seeds of node type and unreadable workflow actions, which contributions name by index
    (thousands of workflows need the same pack, each with the same seed)."""

    def __init__(self, table: list[Any]) -> None:
        self.table = table
        self._texts: dict[bytes, int] = {}

    def index(self, seed: Any) -> int:
        """Return the index of ``seed`` in the table (added when no equal seed was added before)."""
        text = orjson.dumps(seed, option=orjson.OPT_SORT_KEYS)
        found = self._texts.get(text)
        if found is None:
            found = self._texts[text] = len(self.table)
            self.table.append(seed)
        return found


def contribution(record: Mapping[str, Any], seeds: Seeds) -> list[Any]:
    """Return what a workflow's record (after ``status_report.emit``) adds to the whole, in the compact form
    kept per workflow: name, path, readiness, resolved, last resolved, error, its missing files
    ``[folder, name, status, note, invalid_reason]``, its seeds (node types, unreadable file: action id ->
    index in ``seeds``), its missing node types ``[action, class type, state]``, its page row's blockers and
    whether it misses something new, and for an unreadable workflow what it missed before."""
    entry = record["entry"]
    files = [
        [m["folder"], m["name"], m["status"], f[0], f[2]]
        for m, f in zip(entry["missing_models"], record["files"], strict=True)
    ]
    nodes = [[n["action"], n["class_type"], n["state"]] for n in entry["missing_nodes"]]
    row = markdown.row(entry)
    return [
        entry["workflow"],
        entry["path"],
        entry["readiness"],
        record["resolved"],
        entry["last_resolved_at"],
        entry["error"],
        files,
        {aid: seeds.index(seed) for aid, seed in record["seeds"].items()},
        nodes,
        list(row.blockers),
        row.newly_missing,
        record["missing"] if entry["error"] is not None else None,
    ]


def gather(
    aggregate: status_report.Aggregate, kept: list[Any], dirs: Mapping[str, Any], seeds: list[Any], now_text: str
) -> None:
    """Add one kept ``contribution`` to ``aggregate`` as ``Aggregate.add`` adds the record it was made of (a
    resolved workflow was last resolved now); ``dirs``: folder type -> where its files were looked for;
    ``seeds``: the table the contribution's seeds index."""
    name, path, readiness, resolved, last_resolved, error, files, seeded, nodes, blockers, newly, _ = kept
    if resolved:
        kept[4] = last_resolved = now_text
    aggregate.counts["workflows"] += 1
    aggregate.counts[readiness] += 1
    pending_of = aggregate.pending
    for folder, file_name, status, note, invalid_reason in files:
        aggregate.missing_models.add(key(folder, file_name))
        aid = status_report.model_action_id(status, folder, file_name)
        pending = pending_of.get(aid)
        if pending is None:
            aggregate.model_dirs.setdefault(folder or "", dirs[folder or ""])
            model = {"name": file_name, "folder": folder, "note": note, "invalid_reason": invalid_reason}
            pending = pending_of[aid] = status_report._Pending({"model": model, "status": status})
            aggregate.has_downloads = aggregate.has_downloads or status == "FOUND"
        pending.workflows.append(name)
    for aid, seed in seeded.items():
        pending = pending_of.get(aid)
        if pending is None:
            pending = pending_of[aid] = status_report._Pending(seeds[seed])
        pending.workflows.append(name)
    for aid, class_type, state in nodes:
        aggregate.missing_nodes.add(class_type)
        aggregate.has_disabled = aggregate.has_disabled or state == "disabled"
        pending_of[aid].node_types.append(class_type)
    aggregate.rows.append(markdown.Row(name, readiness, tuple(blockers), newly, error))
    aggregate.history[path] = {"last_resolved_at": last_resolved, "missing": history_missing(kept)}


def history_missing(kept: Sequence[Any]) -> list[str]:
    """Return what a kept contribution's workflow misses as the readiness history keeps it
    (``status_report.missing_of``)."""
    if kept[5] is not None:
        return list(kept[11])
    return [f"model:{f[0]}:{f[1]}" for f in kept[6]] + [f"node:{n[1]}" for n in kept[8]]


def action_ids(kept: Sequence[Any]) -> set[str]:
    """Return the ids of the actions a kept contribution adds a workflow to."""
    files = {status_report.model_action_id(f[2], f[0], f[1]) for f in kept[6]}
    return files | set(kept[7]) | {n[0] for n in kept[8]}


def answer_keys(kept: Sequence[Any]) -> list[tuple[str | None, str]]:
    """Return the keys of the search answers a kept contribution was made with (one per missing file)."""
    return [key(f[0], f[1]) for f in kept[6]]


def add_dirs(dirs: dict[str, Any] | None, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """Add to ``dirs`` where the record's missing files were looked for, per folder type; return None when a
    folder type was looked for in other places before (then the whole cannot be gathered from contributions:
    the first workflow in scan order would say where)."""
    if dirs is None:
        return None
    for missing, files in zip(record["entry"]["missing_models"], record["files"], strict=True):
        folder = missing["folder"] or ""
        if dirs.setdefault(folder, files[1]) != files[1]:
            return None
    return dirs


class Builder:
    """What a full report collects for the index while it is built (``WorkflowPass`` adds each workflow)."""

    def __init__(self) -> None:
        self.workflows: list[list[Any]] = []
        self.dirs: dict[str, Any] | None = {}
        self.seeds = Seeds([])

    def add(self, line_digest: bytes, record: Mapping[str, Any]) -> None:
        """Keep the contribution of the workflow on a scan line with digest ``line_digest``."""
        self.workflows.append([line_digest.decode("ascii"), contribution(record, self.seeds)])
        self.dirs = add_dirs(self.dirs, record)


def save(
    state: Path,
    basis_key: str,
    now_text: str,
    flags: tuple[bool, bool],
    workflows: list[list[Any]],
    dirs: dict[str, Any] | None,
    seeds: list[Any],
    answers: Answers,
    ranked: Sequence[Mapping[str, Any]],
    outputs: Sequence[Path],
    known: Mapping[tuple[str | None, str], str] | None = None,
) -> None:
    """Write the index of a report just written (``outputs`` as they are now); remove it when ``dirs`` is
    None (the next report is built in full). A failure to write is logged (the next report is built in full).
    ``known``: answer key -> its digest (hex), where the caller has it."""
    path = state / FILE
    if dirs is None:
        path.unlink(missing_ok=True)
        return
    keys = {k for _, kept in workflows for k in answer_keys(kept)}
    table = pruned(workflows, seeds)
    document = {
        "format": FORMAT,
        "key": basis_key,
        "now": now_text,
        "flags": list(flags),
        "outputs": {str(p): stage_inputs.stat_key(p) for p in outputs},
        "dirs": dirs,
        "answers": [[f, n, (known or {}).get((f, n)) or answers.digest((f, n)).hex()] for f, n in keys],
        "seeds": table,
        "workflows": workflows,
        "actions": [[a["id"], a["blocks"], a["kind"], a["item"]] for a in ranked],
    }
    # A temp file renamed over the last one, not fsynced: a crash costs a full report, never a wrong one (a
    # torn file is not valid JSON, and the outputs' stats must be the ones recorded here).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(orjson.dumps(document))
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("%s: not written (%s); the next report is built in full", path, exc)
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def pruned(workflows: list[list[Any]], seeds: list[Any]) -> list[Any]:
    """Return the seeds the contributions ``workflows`` name, each once; the contributions are changed to
    name them by their index there."""
    moved: dict[int, int] = {}
    table: list[Any] = []
    for _, kept in workflows:
        seeded = kept[7]
        for aid, index in seeded.items():
            new = moved.get(index)
            if new is None:
                new = moved[index] = len(table)
                table.append(seeds[index])
            seeded[aid] = new
    return table


def load(state: Path, basis_key: str, outputs: Sequence[Path]) -> dict[str, Any] | None:
    """Return the kept index when it was made from the inputs ``basis_key`` stands for and the report's
    ``outputs`` are as it left them; else None (a broken or foreign file is logged and ignored)."""
    path = state / FILE
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        logger.warning("%s: unreadable (%s); the report is built in full", path, exc)
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        logger.warning("%s: not an index of this version; the report is built in full", path)
        return None
    if document.get("key") != basis_key:
        logger.debug("%s: made from other inputs; the report is built in full", path)
        return None
    recorded = document.get("outputs")
    if not isinstance(recorded, dict) or any(recorded.get(str(p)) != stage_inputs.stat_key(p) for p in outputs):
        logger.debug("%s: the report is not as it was left; the report is built in full", path)
        return None
    return document


def old_lines(path: Path, workflows: int, actions: int) -> tuple[list[memoryview], list[memoryview]]:
    """Return the workflow and action lines of master_status.json (``status_file.Writer``'s layout, each
    without its trailing comma), as views of the file read once; raise NotIncremental when it does not hold
    that many of each."""
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise NotIncremental(f"{path}: unreadable ({exc})") from None
    lines, start = [], 0
    raw = data.obj
    assert isinstance(raw, bytes)
    while start < len(raw):
        end = raw.find(b"\n", start)
        if end < 0:
            raise NotIncremental(f"{path}: its last line is cut short")
        lines.append(data[start : end - 1] if raw[end - 1] == 0x2C else data[start:end])  # 0x2C: a comma
        start = end + 1
    if not workflows or not actions or len(lines) != workflows + actions + 3 or lines[0] != _OPEN:
        raise NotIncremental(f"{path}: not the report the index was kept with")
    if lines[workflows + 1] != _BETWEEN or bytes(lines[-1][:2]) != b"],":
        raise NotIncremental(f"{path}: not the report the index was kept with")
    return lines[1 : workflows + 1], lines[workflows + 2 : workflows + 2 + actions]


class Increment:
    """This cycle's workflows matched against the kept index: which kept contributions stand (``reused``:
    scan position -> kept position) and which scan lines must be worked out again (``changed``), and the
    actions those workflows needed before or need now (``dirty``, filled as they are worked out)."""

    def __init__(self, index: Mapping[str, Any], digests: Sequence[bytes], answers: Answers) -> None:
        self.index = index
        kept = index["workflows"]
        # What each answer the kept workflows depend on is now (``save`` keeps it for the next cycle).
        self.answers = {(f, n): answers.digest((f, n)).hex() for f, n, _ in index["answers"]}
        changed_answers = {(f, n) for f, n, digest in index["answers"] if self.answers[(f, n)] != digest}
        by_digest = {line_digest.encode("ascii"): position for position, (line_digest, _) in enumerate(kept)}
        self.reused: dict[int, int] = {}
        self.changed: list[int] = []
        self.dirty: set[str] = set()
        seen: set[int] = set()
        for position, line_digest in enumerate(digests):
            old = by_digest.get(line_digest)
            if old is not None and old not in seen and self._stands(kept[old][1], changed_answers):
                self.reused[position] = old
                seen.add(old)
            else:
                self.changed.append(position)
        for old, (_, contribution_kept) in enumerate(kept):
            if old not in seen:
                self.dirty |= action_ids(contribution_kept)
        self._paths = {c[1]: position for position, (_, c) in enumerate(kept)}

    def past(self, path: str) -> dict[str, Any]:
        """Return the readiness history entry of the workflow at ``path``: what the last report wrote for it
        (report_history.json is as that report left it), or nothing when it was not in that report."""
        position = self._paths.get(path)
        if position is None:
            return {}
        kept = self.index["workflows"][position][1]
        return {"last_resolved_at": kept[4], "missing": history_missing(kept)}

    @staticmethod
    def _stands(kept: Sequence[Any], changed_answers: set[tuple[str | None, str]]) -> bool:
        """Return True when a kept contribution is what its unchanged scan line makes this cycle: nothing
        newly missing (what it misses is now its history, so it would say nothing new) and no answer it
        depends on changed."""
        if kept[10]:
            return False
        return not changed_answers or not any(k in changed_answers for k in answer_keys(kept))


def reused_line(line: memoryview, kept: Sequence[Any], then: str, now_text: str) -> memoryview | bytes:
    """Return a kept workflow line of master_status.json for this report: a resolved workflow's
    ``last_resolved_at`` (the last report's time, ``then``) set to now. Compact JSON escapes quotes inside
    strings, so the key and its value can only be the entry's own."""
    if not kept[3] or then == now_text:
        return line
    old, text = b'"last_resolved_at":' + orjson.dumps(then), bytes(line)
    if old not in text:
        raise NotIncremental("a kept workflow line does not hold its last resolved time")
    return text.replace(old, b'"last_resolved_at":' + orjson.dumps(now_text), 1)


def scan_entry(scan: ScanLines, position: int, line: bytes) -> dict[str, Any]:
    """Return the validated scan.json entry of the workflow at ``position`` (line ``position + 2``)."""
    return scan.parse(position + 2, line)


def encode_workflow(entry: Mapping[str, Any], path: Path) -> bytes:
    """Return a workflow entry's line of master_status.json, validated."""
    return status_file.part(entry, "workflow", f"{path} (workflow {entry['path']})")
