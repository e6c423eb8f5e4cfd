"""Every file a cycle writes, declared once: where it lives, its schema, who writes it and who reads it.

The stages, the cycle runner, the tests and the README's artifact table are made from this list (see
``readme_table`` and ``tools/artifact_table.py``), so a new artifact is one entry here plus its schema in
``schemas/``. Paths are relative to the home folder; ``{stage}`` stands for a stage name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

from comfywatchman.config import Config

Kind = Literal["json", "jsonl", "text", "binary"]

# Who writes a file besides the stages: the guarded cycle (cycles.jsonl, scheduler.json) and the
# --scheduler loop (scheduler.json).
CYCLE = "cycle"
LOOP = "loop"


# A NamedTuple, not a frozen dataclass: every process imports this module, and a dataclass costs it ~0.4 ms
# to make (Python 3.11), a NamedTuple a tenth of that.
class Artifact(NamedTuple):
    """One file a cycle writes.

    ``path``: relative to the home folder (``state/...``, ``output/...``, ``log/...``). ``schema``: the schema
    name in ``schemas/`` (without ``.schema.json``) the document, or each line of a JSON-lines file, must
    satisfy; None for a file that is not JSON. ``writers`` and ``readers``: stages, or ``cycle`` / ``loop``.
    ``about``: what it holds, for the README. ``every_cycle``: False for a file written only when the user
    asks for it (approvals, downloads), not by every cycle.
    """

    key: str
    path: str
    schema: str | None
    kind: Kind
    writers: tuple[str, ...]
    readers: tuple[str, ...]
    about: str
    every_cycle: bool = True

    def locate(self, home: Path, stage: str = "") -> Path:
        """Return the file's path under ``home`` (``stage`` fills ``{stage}``)."""
        return home / self.path.format(stage=stage)


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact(
        "gate",
        "state/gate.json",
        "gate",
        "json",
        ("gate",),
        ("cycle",),
        "run or skip, and why (free VRAM per GPU, ...)",
    ),
    Artifact(
        "awake",
        "state/awake.json",
        "awake",
        "json",
        ("gate", LOOP),
        ("gate", LOOP),
        "the suspend clocks seen last, to tell a resume from suspend",
    ),
    Artifact(
        "model_cache",
        "state/model_cache.json",
        "model_cache",
        "json",
        ("cache",),
        ("scan", "search", "verify", "report"),
        "installed model files by folder type, from `models/` and `extra_model_paths.yaml`; rewritten only "
        "when the install changed; `walk_limits`: folders whose walk a bound cut short",
    ),
    Artifact(
        "custom_nodes_cache",
        "state/custom_nodes_cache.json",
        "custom_nodes_cache",
        "json",
        ("cache",),
        ("scan",),
        "each pack in `custom_nodes/`: enabled or disabled, version, the node types it registers (read "
        "statically, never imported)",
    ),
    Artifact(
        "pack_reads",
        "state/pack_reads.json",
        "pack_reads",
        "json",
        ("cache",),
        ("cache",),
        "what was read of each custom node pack, by a fingerprint of its files (path, size, mtime), so an "
        "unchanged pack is not parsed again (a cache: safe to delete)",
    ),
    Artifact(
        "model_walk_plan",
        "state/model_walk_plan.bin",
        None,
        "binary",
        ("cache",),
        ("cache", CYCLE),
        "the model folders the cache stage walked, with their suffixes and bounds, so that the next cycle's "
        "process walks them while it starts (when --home or COMFYWATCHMAN_HOME names the home; a cache: safe to "
        "delete)",
    ),
    Artifact(
        "intake",
        "state/intake.json",
        "intake",
        "json",
        ("intake",),
        ("intake", "scan", "report"),
        "every workflow file found, with its sha256 and `new` / `changed` / `unchanged`",
    ),
    Artifact(
        "intake_log",
        "state/intake_log.jsonl",
        "intake_log_entry",
        "jsonl",
        ("intake",),
        ("intake", "report"),
        "one line per acknowledgment `{ts, source, path, sha256, kind}`; an unchanged file is never acknowledged twice",
    ),
    Artifact(
        "scan",
        "state/scan.json",
        "scan",
        "json",
        ("scan",),
        ("scan", "search", "verify", "report"),
        "per workflow, every model and node type it needs: what is missing, invalid or disabled in full "
        "(where in the workflow — node, input, subgraph — and where it was looked for), installed models "
        "(`installed_models`) and provided node types (`provided_nodes`) in short",
    ),
    Artifact(
        "scan_inputs",
        "state/scan_inputs.json",
        "scan_inputs",
        "json",
        ("scan",),
        ("scan",),
        "what the last scan was computed from, so an unchanged install and unchanged workflows are not "
        "scanned again (a cache: safe to delete)",
    ),
    Artifact(
        "scan_lines",
        "state/scan_lines.json",
        "scan_lines",
        "json",
        ("scan",),
        ("scan",),
        "where each readable entry of scan.json is and what the scan counts of it, so a scan that keeps most "
        "entries does not parse every line again (a cache: safe to delete)",
    ),
    Artifact(
        "scan_digests",
        "state/scan_digests.bin",
        None,
        "binary",
        ("scan",),
        ("scan", "search", "verify", "report"),
        "the digest, offset and length of each workflow line of scan.json, written with it, so the search and "
        "verify find the lines that changed without hashing scan.json (trusted only for the very scan.json it was "
        "written with; a cache: safe to delete)",
    ),
    Artifact(
        "requirements",
        "state/requirements.pack",
        None,
        "binary",
        ("scan",),
        ("scan",),
        "each workflow's parsed requirements by content hash, so unchanged workflows are not parsed again "
        "(a cache: safe to delete)",
    ),
    Artifact(
        "search_cache",
        "state/search_cache.json",
        "search_cache",
        "json",
        ("search",),
        ("search",),
        "answers reused until they expire (`cache_ttl_hours`, `negative_ttl_hours`); errors are never cached",
    ),
    Artifact(
        "search",
        "state/search.json",
        "search",
        "json",
        ("search",),
        ("verify", "report"),
        "per missing file: `FOUND`, `UNCERTAIN`, `NOT_FOUND`, `ERROR`, `INVALID_FILENAME` or `NOT_SEARCHED`, "
        "with evidence, URL and candidates",
    ),
    Artifact(
        "search_parts",
        "state/search_parts.pack",
        None,
        "binary",
        ("scan", "search"),
        ("search",),
        "the missing files of each workflow line of scan.json, so a search reads only the workflows that changed "
        "(filled by the scan as it writes scan.json; a cache: safe to delete)",
    ),
    Artifact(
        "search_delta",
        "state/search_delta.bin",
        None,
        "binary",
        ("search",),
        ("search",),
        "the digest and workflow of each line of scan.json, the missing file of each line of search.json and which "
        "lines are FOUND, so an offline search where a few workflows changed answers only the files they name "
        "(written by offline searches only; a cache: safe to delete)",
        every_cycle=False,
    ),
    Artifact(
        "search_digests",
        "state/search_digests.bin",
        None,
        "binary",
        ("search",),
        ("report",),
        "the digest of each result line of search.json, written with it, so the report finds the answers that "
        "changed without hashing search.json (trusted only for the very search.json it was written with; a cache: "
        "safe to delete)",
    ),
    Artifact(
        "search_inputs",
        "state/search_inputs.json",
        "stage_inputs",
        "json",
        ("search",),
        ("search",),
        "what the last search was computed from and until when its answers hold, so an unchanged scan is not "
        "searched again (a cache: safe to delete)",
    ),
    Artifact(
        "report_inputs",
        "state/report_inputs.json",
        "stage_inputs",
        "json",
        ("report",),
        ("report",),
        "what the last report was computed from, so an unchanged cycle leaves the report as it is (a cache: "
        "safe to delete)",
    ),
    Artifact(
        "report_parts",
        "state/report_parts.pack",
        None,
        "binary",
        ("report",),
        ("report",),
        "each workflow's part of the report by the digest of its scan entry and what it depends on, so an "
        "unchanged workflow is not worked out again (a cache: safe to delete)",
    ),
    Artifact(
        "report_scan_keys",
        "state/report_scan_keys.bin",
        None,
        "binary",
        ("scan", "report"),
        ("scan", "report"),
        "the report's digest of each scan.json line by the scan's digest of it, so the report finds its kept "
        "parts through scan_digests.bin without hashing scan.json (written by a scan that makes many entries "
        "and by a report that reads scan.json's lines; a cache: safe to delete)",
    ),
    Artifact(
        "report_scan_parts",
        "state/report_scan_parts.pack",
        None,
        "binary",
        ("scan",),
        ("report",),
        "what the report reads of each workflow entry the last scan that made many made, so a report that works "
        "every workflow out does not read scan.json's lines back (a cache: safe to delete)",
    ),
    Artifact(
        "report_index",
        "state/report_index.pack",
        None,
        "binary",
        ("report",),
        ("report",),
        "each workflow's contribution to the report, what they all add up to with each one's page row, and the "
        "actions in the report's order, so a cycle where a few workflows changed works out those alone (a cache: "
        "safe to delete)",
    ),
    Artifact(
        "report_actions",
        "state/report_actions.bin",
        None,
        "binary",
        ("report",),
        ("report",),
        "the actions of the last report as its page was made of them, each kept slim: what ranks it and what the "
        "page reads of it (Python's marshal format: the list, then the changes later reports made to it), so a "
        "cycle where a few workflows changed neither parses nor writes every action again (a cache: safe to "
        "delete)",
    ),
    Artifact(
        "report_answers",
        "state/report_answers.pack",
        None,
        "binary",
        ("search", "report"),
        ("report",),
        "what the report takes from search.json's answers, kept while they are unchanged, so search.json is "
        "not read again for them (a search that writes search.json in full where there is none writes it, so "
        "the first report parses none of its lines; a cache: safe to delete)",
    ),
    Artifact(
        "download_queue",
        "state/download_queue.json",
        "download_queue",
        "json",
        ("search",),
        ("verify", "download", "report"),
        "one task per proven file: target folder and path, URL, sha256, size; `pending_review` until you approve",
    ),
    Artifact(
        "downloads",
        "state/downloads.json",
        "downloads",
        "json",
        ("download",),
        ("download",),
        "your approvals (`--approve`) and each task's last outcome (`done`, `present`, `failed`, `deferred`), "
        "kept while the queue is rewritten",
        every_cycle=False,
    ),
    Artifact(
        "hashes",
        "state/hashes.json",
        "hashes",
        "json",
        ("verify",),
        ("verify",),
        "the sha256 of each installed file a workflow declares a hash for, kept by path, size and mtime, so no "
        "file is hashed twice (a cache: safe to delete); written once a workflow declares a hash for an "
        "installed file",
        every_cycle=False,
    ),
    Artifact(
        "verify",
        "state/verify.json",
        "verify",
        "json",
        ("verify",),
        ("report",),
        "drift (an installed file whose sha256 is not the declared or published one, or that is cut short), how "
        "much is verified so far, and variants already on disk of each missing file",
    ),
    Artifact(
        "verify_parts",
        "state/verify_parts.pack",
        None,
        "binary",
        ("scan", "verify"),
        ("verify",),
        "the installed and missing files of each workflow line of scan.json, so verify reads only the workflows "
        "that changed (filled by the scan as it writes scan.json; a cache: safe to delete)",
    ),
    Artifact(
        "verify_delta",
        "state/verify_delta.bin",
        None,
        "binary",
        ("verify",),
        ("verify",),
        "the digest, workflow and share of each line of scan.json, the lines naming each file, the FOUND answers "
        "read and the model cache's folders, so a verify where a few workflows changed works out only the files "
        "they name (a cache: safe to delete)",
    ),
    Artifact(
        "verify_inputs",
        "state/verify_inputs.json",
        "verify_inputs",
        "json",
        ("verify",),
        ("verify",),
        "what the last verify stage was computed from, so an unchanged install is not checked again (a cache)",
    ),
    Artifact(
        "report_history",
        "state/report_history.json",
        "report_history",
        "json",
        ("report",),
        ("report",),
        "per workflow, since when it is ready and what it last missed",
    ),
    Artifact(
        "stage_run",
        "state/runs/{stage}.json",
        "stage_run",
        "json",
        ("gate", "cache", "intake", "scan", "search", "verify", "download", "report"),
        ("report",),
        "timing, success, errors and counts of the stage's latest run",
    ),
    Artifact(
        "config_cache",
        "state/config_cache.bin",
        None,
        "binary",
        (CYCLE, LOOP),
        (CYCLE, LOOP),
        "the checked configuration with what it was made of (config files, flags, environment, installed "
        "backends), so a command where none changed skips parsing and checking it; no secrets (written when "
        "--home or COMFYWATCHMAN_HOME names the home; a cache: safe to delete)",
    ),
    Artifact(
        "cycles",
        "state/cycles.jsonl",
        "cycle",
        "jsonl",
        (CYCLE, LOOP),
        (),
        "one line per cycle, skipped ones included: timing, outcome, errors and headline counts",
    ),
    Artifact(
        "scheduler",
        "state/scheduler.json",
        "scheduler",
        "json",
        (CYCLE, LOOP),
        (CYCLE, LOOP),
        "last outcome, skip reason, next run, and the `--scheduler` loop's state",
    ),
    Artifact(
        "master_status",
        "output/reports/status/master_status.json",
        "master_status",
        "json",
        ("report",),
        (),
        "the report below, for tools",
    ),
    Artifact(
        "master_status_md",
        "output/reports/status/master_status.md",
        None,
        "text",
        ("report",),
        (),
        "the report below, for you",
    ),
    Artifact(
        "structured_log",
        "log/structured.log",
        "structured_log_entry",
        "jsonl",
        ("gate", "cache", "intake", "scan", "search", "verify", "download", "report", CYCLE, LOOP),
        (),
        "one JSON line per stage event: `ts, level, cycle_id, stage, event, workflows_scanned, resolved, "
        "uncertain, errors, detail`",
    ),
)

BY_KEY: dict[str, Artifact] = {a.key: a for a in ARTIFACTS}


def artifact(key: str) -> Artifact:
    """Return the artifact called ``key`` (KeyError names the known ones when there is none)."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no artifact {key!r} in the catalogue (known: {', '.join(BY_KEY)})") from None


def path(config: Config, key: str, stage: str = "") -> Path:
    """Return where the artifact ``key`` lives for ``config``'s home (``stage`` fills ``{stage}``)."""
    return artifact(key).locate(config.home, stage)


def in_state(state_dir: Path, key: str, stage: str = "") -> Path:
    """Return where the artifact ``key`` of the state folder (``state/...``) lives in ``state_dir``."""
    relative = artifact(key).path.format(stage=stage)
    if not relative.startswith("state/"):
        raise ValueError(f"artifact {key!r} is not in the state folder")
    return state_dir / relative.removeprefix("state/")


def schema(key: str) -> str:
    """Return the schema name of the JSON artifact ``key`` (ValueError for a file that is not JSON)."""
    name = artifact(key).schema
    if name is None:
        raise ValueError(f"artifact {key!r} is not JSON and has no schema")
    return name


def written_by(who: str) -> tuple[Artifact, ...]:
    """Return the artifacts ``who`` (a stage, ``cycle`` or ``loop``) writes, in catalogue order."""
    return tuple(a for a in ARTIFACTS if who in a.writers)


def for_relative_path(relative: str) -> Artifact | None:
    """Return the artifact a file at ``relative`` (to the home, with ``/``) is, or None when none is."""
    for item in ARTIFACTS:
        if "{stage}" in item.path:
            head, _, tail = item.path.partition("{stage}")
            middle = relative[len(head) : len(relative) - len(tail)] if len(relative) > len(head) + len(tail) else ""
            if relative.startswith(head) and relative.endswith(tail) and middle and "/" not in middle:
                return item
        elif item.path == relative:
            return item
    return None


def files_by_folder(home: Path, stages: tuple[str, ...]) -> dict[Path, set[str]]:
    """Return folder -> names of every artifact under ``home`` (``{stage}`` filled with each of ``stages``),
    for finding the temp files their writes leave."""
    found: dict[Path, set[str]] = {}
    for item in ARTIFACTS:
        for stage in stages if "{stage}" in item.path else ("",):
            where = item.locate(home, stage)
            found.setdefault(where.parent, set()).add(where.name)
    return found


def readme_table() -> str:
    """Return the README's artifact table (Markdown), one row per artifact, from the catalogue."""
    rows = [
        "| file (under the home folder) | format | schema | written by | read by | what it holds |",
        "|---|---|---|---|---|---|",
    ]
    for item in ARTIFACTS:
        schema_cell = f"`schemas/{item.schema}.schema.json`" if item.schema else "—"
        kind = {"json": "JSON", "jsonl": "JSON lines", "text": "Markdown", "binary": "binary"}[item.kind]
        shown = item.path.replace("{stage}", "<stage>")
        rows.append(
            f"| `{shown}` | {kind} | {schema_cell} | {', '.join(item.writers)} | "
            f"{', '.join(item.readers) or '—'} | {item.about} |"
        )
    return "\n".join(rows) + "\n"
